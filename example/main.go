// Command example is a small gf application that keeps its sessions in a
// gfsession storage chosen by manifest/config/config.yaml.
//
// Run it from the repository root:
//
//	go run ./example
package main

import (
	// The blank import is all the code gfsession needs: it lets
	// `server.sessionStorage` in the config file pick the storage.
	_ "github.com/goframe-contrib/gfsession"

	"github.com/gogf/gf/v2/os/gctx"

	"github.com/goframe-contrib/gfsession/example/internal/cmd"
)

func main() {
	cmd.Main.Run(gctx.GetInitCtx())
}
