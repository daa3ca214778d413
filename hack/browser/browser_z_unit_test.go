package browser

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// repoRoot is the root of the gfsession repository, two folders up.
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "example", "main.go"))
	return root
}

// chromium returns the path of the Chromium binary. Without one the test
// fails under CI=true (hack/test.sh installs it) and is skipped elsewhere.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH: hack/test.sh installs Debian's chromium package")
	}
	t.Skip("no chromium on PATH (Debian: apt-get install chromium)")
	return ""
}

// freeAddr returns a loopback address with a free port.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// startExample builds the example, runs it with its own config file moved
// to a free port and a session folder of the test's, and returns its URL.
func startExample(t *testing.T) string {
	root := repoRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "example")
	build := exec.Command("go", "build", "-o", bin, "./example")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./example: %s", out)

	config, err := os.ReadFile(filepath.Join(root, "example", "manifest", "config", "config.yaml"))
	require.NoError(t, err)
	addr := freeAddr(t)
	text := strings.Replace(string(config), `address: "127.0.0.1:8199"`, fmt.Sprintf("address: %q", addr), 1)
	require.NotEqual(t, string(config), text, "the example's config no longer sets its address")
	text = strings.Replace(text, `type: "file"`, fmt.Sprintf("type: \"file\"\n    path: %q", filepath.Join(dir, "sessions")), 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(text), 0o600))

	cmd := exec.Command(bin, "--gf.gcfg.path="+dir)
	cmd.Dir = dir
	logs, err := os.Create(filepath.Join(dir, "example.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("example's output:\n%s", b)
		}
	})
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the example did not start")
	return "http://" + addr
}

// newBrowser starts a headless Chromium with a profile of its own: its own
// cookies, as another device.
func newBrowser(t *testing.T, path string) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// do runs `steps` in browser `ctx`.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, steps...), what)
}

// text returns the text of the element `css` selects in browser `ctx`.
func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	require.NoError(t, err, "text of %s", css)
	return s
}

// deviceCount waits until the page lists `n` devices.
func deviceCount(n int) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll('#devices li').length === %d`, n),
		chromedp.WithPollingTimeout(20*time.Second))
}

// TestBrowser_SignOutOtherDevice signs one user in from two browsers, each
// with its own cookies. The first lists both devices, its own marked as
// this device, and signs the other out with its button; the other
// browser's page then shows it is not logged in, and the first stays
// logged in with one device left.
func TestBrowser_SignOutOtherDevice(t *testing.T) {
	path := chromium(t)
	base := startExample(t)
	user := fmt.Sprintf("ann%d", time.Now().UnixNano()%1000000)
	a, b := newBrowser(t, path), newBrowser(t, path)

	login := func(devices int) []chromedp.Action[chromedp.Void] {
		return []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(base + "/"),
			chromedp.WaitVisible(chromedp.CSS(`#login`)),
			chromedp.SendKeys(chromedp.CSS(`#login input[name=username]`), user),
			chromedp.Click(chromedp.CSS(`#login button`)),
			chromedp.WaitVisible(chromedp.CSS(`#devices-card`)),
			deviceCount(devices),
		}
	}
	do(t, a, "device A logs in", login(1)...)
	do(t, b, "device B logs in", login(2)...)

	do(t, a, "device A lists both devices", chromedp.Reload(), deviceCount(2))
	require.Equal(t, "Logged in as "+user, text(t, a, `#state`))
	require.Contains(t, text(t, a, `#devices li.current`), "(this device)")
	require.NotContains(t, text(t, a, `#devices li:not(.current)`), "(this device)")

	do(t, a, "device A signs device B out",
		chromedp.Click(chromedp.CSS(`#devices li:not(.current) button.signout`)),
		deviceCount(1),
	)

	do(t, b, "device B is signed out", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#login`)))
	require.Equal(t, "Not logged in", text(t, b, `#state`))

	do(t, a, "device A is still logged in", chromedp.Reload(), deviceCount(1))
	require.Equal(t, "Logged in as "+user, text(t, a, `#state`))
}
