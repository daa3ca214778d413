// Package page serves the example's single HTML page.
package page

import (
	_ "embed"

	"github.com/gogf/gf/v2/net/ghttp"
)

//go:embed index.html
var index []byte

// Index writes the page. The page itself does not touch the session; its
// buttons call the JSON API.
func Index(r *ghttp.Request) {
	r.Response.Header().Set("Content-Type", "text/html; charset=utf-8")
	r.Response.Write(index)
}
