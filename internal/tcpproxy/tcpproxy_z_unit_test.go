package tcpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

type client struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &client{c, bufio.NewReader(c)}
}

// roundTrip sends `line` and returns the answer, or an error when none
// comes within `wait`.
func (c *client) roundTrip(line string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	return c.read(wait)
}

func (c *client) read(wait time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func TestProxy(t *testing.T) {
	target := echoServer(t)
	p, err := New(target)
	require.NoError(t, err)
	defer p.Close()
	goroutines := runtime.NumGoroutine()

	// Normal: bytes flow.
	c := dial(t, p.Addr())
	got, err := c.roundTrip("one", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "one", got)
	assert.Equal(t, 1, p.Conns())

	// Blackhole: the connection stays open, nothing comes back, and a new
	// connection is accepted but answers nothing either.
	require.NoError(t, p.Blackhole())
	assert.Equal(t, Blackhole, p.Mode())
	_, err = c.roundTrip("two", 100*time.Millisecond)
	assert.True(t, isTimeout(err), "an answer came through the blackhole: %v", err)
	late := dial(t, p.Addr())
	_, err = late.roundTrip("late", 100*time.Millisecond)
	assert.True(t, isTimeout(err), "an answer came through the blackhole: %v", err)
	require.Eventually(t, func() bool { return p.Conns() == 2 }, time.Second, time.Millisecond)

	// Back to normal: what was held arrives, in order.
	require.NoError(t, p.Normal())
	got, err = c.read(time.Second)
	require.NoError(t, err)
	assert.Equal(t, "two", got)
	got, err = late.read(time.Second)
	require.NoError(t, err)
	assert.Equal(t, "late", got)
	got, err = c.roundTrip("three", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "three", got)

	// Cut: open connections end, new ones are refused.
	p.Cut()
	assert.Equal(t, Cut, p.Mode())
	_, err = c.roundTrip("four", time.Second)
	require.Error(t, err)
	assert.False(t, isTimeout(err), "a cut connection must end, not hang")
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	assert.Error(t, err, "a cut proxy accepted a connection")
	assert.Equal(t, 0, p.Conns())

	// Normal again, on the same address.
	require.NoError(t, p.Normal())
	c = dial(t, p.Addr())
	got, err = c.roundTrip("five", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "five", got)

	// Cut straight from a blackhole releases everything held.
	require.NoError(t, p.Blackhole())
	_, err = c.roundTrip("six", 50*time.Millisecond)
	require.True(t, isTimeout(err))
	p.Cut()
	_, err = c.read(time.Second)
	require.Error(t, err)
	assert.False(t, isTimeout(err))
	require.NoError(t, p.Blackhole(), "blackhole after cut listens again")
	require.NoError(t, p.Normal())

	// Close stops every goroutine of the proxy.
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	assert.Error(t, p.Normal())
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+2 }, 2*time.Second, 5*time.Millisecond,
		"goroutines: %d, before: %d", runtime.NumGoroutine(), goroutines)
}

// TestProxyTargetDown checks that a client of a proxy whose target refuses
// connections is disconnected, not left hanging.
func TestProxyTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	target := ln.Addr().String()
	require.NoError(t, ln.Close())
	p, err := New(target)
	require.NoError(t, err)
	defer p.Close()
	c := dial(t, p.Addr())
	_, err = c.roundTrip("x", time.Second)
	require.Error(t, err)
	assert.False(t, isTimeout(err))
	require.Eventually(t, func() bool { return p.Conns() == 0 }, time.Second, time.Millisecond)
}
