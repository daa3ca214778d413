// Package tcpproxy is a TCP proxy for fault tests. It listens on a free
// 127.0.0.1 port, forwards every connection to a target address, and can be
// switched at any time between three modes:
//
//   - Normal: bytes flow both ways.
//   - Cut: every connection is closed and new ones are refused, as when the
//     server is down or a firewall answers with RST.
//   - Blackhole: connections are accepted and kept open, but nothing is
//     forwarded in either direction, as in a network partition that drops
//     packets: clients wait for answers that do not come.
//
// Switching from Blackhole back to Normal delivers what was held, in order,
// as TCP does when a partition heals; switching from Cut to Normal listens
// again on the same address.
//
//	p, err := tcpproxy.New("127.0.0.1:5432")
//	defer p.Close()
//	// point the client at p.Addr(), then:
//	p.Blackhole()
//	p.Normal()
package tcpproxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Mode is what the proxy does with connections.
type Mode int

const (
	// Normal forwards bytes both ways.
	Normal Mode = iota
	// Cut closes every connection and refuses new ones.
	Cut
	// Blackhole accepts and keeps connections but forwards nothing.
	Blackhole
)

// String returns the name of the mode.
func (m Mode) String() string {
	switch m {
	case Normal:
		return "normal"
	case Cut:
		return "cut"
	case Blackhole:
		return "blackhole"
	}
	return "unknown"
}

// dialTimeout bounds the connection to the target.
const dialTimeout = 5 * time.Second

// Proxy is a TCP proxy on a loopback port. Its methods are safe for
// concurrent use.
type Proxy struct {
	target string
	addr   string

	mu       sync.Mutex
	changed  *sync.Cond // broadcast on every mode change
	mode     Mode
	closed   bool
	ln       net.Listener          // nil while cut
	clients  map[net.Conn]struct{} // accepted connections still open
	upstream map[net.Conn]struct{} // connections to the target still open
	wg       sync.WaitGroup        // every goroutine of the proxy
}

// New starts a proxy in mode Normal on a free 127.0.0.1 port, forwarding to
// `target` (host:port). It dials the target only when a client connects.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		target:   target,
		addr:     ln.Addr().String(),
		clients:  make(map[net.Conn]struct{}),
		upstream: make(map[net.Conn]struct{}),
	}
	p.changed = sync.NewCond(&p.mu)
	p.mu.Lock()
	p.serve(ln)
	p.mu.Unlock()
	return p, nil
}

// Addr returns the address clients connect to, host:port. It stays the same
// for the life of the proxy.
func (p *Proxy) Addr() string {
	return p.addr
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Conns returns the number of client connections the proxy holds open. In
// mode Blackhole that includes connections the client already closed: the
// proxy reads nothing then, so it notices only when forwarding resumes,
// as a server behind a partition would.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

// Normal forwards again: held bytes are delivered, and after Cut the proxy
// listens again on Addr. It fails only when it cannot listen there again,
// or after Close.
func (p *Proxy) Normal() error {
	return p.set(Normal)
}

// Cut closes every connection and refuses new ones until Normal or
// Blackhole.
func (p *Proxy) Cut() {
	_ = p.set(Cut)
}

// Blackhole stops forwarding on every connection, open or new, without
// closing any, until Normal or Cut. After Cut it fails only when it cannot
// listen on Addr again, or after Close.
func (p *Proxy) Blackhole() error {
	return p.set(Blackhole)
}

// Close cuts every connection, stops listening and waits for the proxy's
// goroutines. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cutLocked()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) set(mode Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("tcpproxy: closed")
	}
	if mode == Cut {
		p.cutLocked()
		return nil
	}
	if p.ln == nil {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return err
		}
		p.serve(ln)
	}
	p.mode = mode
	p.changed.Broadcast()
	return nil
}

// cutLocked closes the listener and every connection; p.mu is held.
func (p *Proxy) cutLocked() {
	p.mode = Cut
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.clients {
		_ = c.Close()
	}
	for c := range p.upstream {
		_ = c.Close()
	}
	clear(p.clients)
	clear(p.upstream)
	p.changed.Broadcast()
}

// serve accepts connections on `ln` until it is closed; p.mu is held.
func (p *Proxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(p.clients, c) {
				continue
			}
			p.wg.Add(1)
			go p.handle(c)
		}
	}()
}

// track records `c` as open, or closes it and returns false when the proxy
// is cut (a connection accepted just before the listener closed).
func (p *Proxy) track(set map[net.Conn]struct{}, c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == Cut || p.closed {
		_ = c.Close()
		return false
	}
	set[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.clients, c)
	delete(p.upstream, c)
	p.mu.Unlock()
}

// forwarding waits while the proxy is black-holed, and reports whether
// bytes may flow (false once cut or closed).
func (p *Proxy) forwarding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == Blackhole && !p.closed {
		p.changed.Wait()
	}
	return p.mode == Normal && !p.closed
}

// handle connects client `c` to the target and copies both ways.
func (p *Proxy) handle(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	if !p.forwarding() {
		return
	}
	u, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		return
	}
	if !p.track(p.upstream, u) {
		return
	}
	defer p.untrack(u)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.copy(u, c)
	}()
	p.copy(c, u)
}

// copy forwards `src` to `dst` until either fails, then closes both so that
// the other direction ends too. What it read while black-holed is held and
// written once forwarding resumes.
func (p *Proxy) copy(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.forwarding() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// Wait out a blackhole before passing the close on.
			p.forwarding()
			return
		}
	}
}
