// Package cmd holds the example's command line: one command that starts the
// HTTP server.
package cmd

import (
	"context"
	"fmt"
	"net"

	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"
	"github.com/gogf/gf/v2/os/gcmd"
	"github.com/gogf/gf/v2/os/gfile"
	"github.com/gogf/gf/v2/os/gsession"

	"github.com/goframe-contrib/gfsession"

	"github.com/goframe-contrib/gfsession/example/internal/controller/page"
	"github.com/goframe-contrib/gfsession/example/internal/controller/session"
)

var Main = gcmd.Command{
	Name:  "main",
	Usage: "main",
	Brief: "start the gfsession example HTTP server",
	Func: func(ctx context.Context, parser *gcmd.Parser) (err error) {
		s := Server()
		if err = s.Start(); err != nil {
			return err
		}
		g.Log().Infof(ctx, "gfsession example listening on %s (storage: %s)",
			listenURL(s), describeStorage(ctx, s))
		g.Wait()
		return nil
	},
}

// Server returns the example's server, routes bound, not started.
func Server() *ghttp.Server {
	// g.Server() reads the `server` node of the config file. With
	// gfsession imported, that includes `sessionStorage`; a bad value
	// there makes this call fail with an error naming the key.
	s := g.Server()
	// Optional, recommended: session ids of 192 random bits instead of
	// ghttp's, and ids the storage never issued are replaced (session
	// fixation). The storage itself is still chosen by the config file.
	s.Use(gfsession.Middleware)
	s.BindHandler("GET:/", page.Index)
	s.Group("/api", func(group *ghttp.RouterGroup) {
		group.Middleware(ghttp.MiddlewareHandlerResponse)
		group.Bind(session.NewV1())
	})
	return s
}

// listenURL returns a URL a browser on this machine can open.
func listenURL(s *ghttp.Server) string {
	host, _, err := net.SplitHostPort(s.GetListenedAddress())
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(host, fmt.Sprint(s.GetListenedPort())))
}

// describeStorage says which storage the config file chose.
func describeStorage(ctx context.Context, s *ghttp.Server) string {
	node := g.Cfg().MustGet(ctx, "server.sessionStorage")
	if node.IsNil() {
		return "gf's default file storage (server.sessionStorage is not set)"
	}
	typ, path := node.String(), ""
	if m := node.Map(); len(m) > 0 {
		typ, path = fmt.Sprint(m["type"]), fmt.Sprint(m["path"])
		if m["path"] == nil {
			path = ""
		}
	}
	if typ == gfsession.TypeFile {
		if path == "" {
			// gf's folder for the server's session files.
			sessionPath := g.Cfg().MustGet(ctx, "server.sessionPath", gsession.DefaultStorageFilePath).String()
			path = gfile.Join(sessionPath, s.GetName())
		}
		return typ + " in " + path
	}
	return typ
}
