package gfsession_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
)

// listFiles returns every file below `dir`, relative to it.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return nil
	}))
	return files
}

// rawGet sends a GET with a raw Cookie header, bypassing net/http's client
// checks, so that ids with bytes a browser would never send (NUL, CR) reach
// the server as an attacker would send them. It returns the status code.
func rawGet(t *testing.T, base, path, cookie string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nCookie: gfsessionid=%s\r\nConnection: close\r\n\r\n", path, cookie)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestSecurity_EndToEnd drives a real ghttp server that uses
// gfsession.Middleware and a sealed file storage, the way an attacker would:
// a fixation attempt, hostile ids, a tampered sealed session and the replay
// of an expired session's cookie.
func TestSecurity_EndToEnd(t *testing.T) {
	const ttl = 400 * time.Millisecond
	root := t.TempDir()
	dir := filepath.Join(root, "sessions")
	key := make([]byte, gfsession.CryptoKeySize)
	_, _ = rand.Read(key)
	storage, err := gfsession.NewStorageFile(gfsession.FileConfig{Path: dir, CryptoKeys: [][]byte{key}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = storage.Close(context.Background()) })
	base := startMiddlewareApp(t, storage, ttl)

	t.Run("fixation", func(t *testing.T) {
		planted := "plantedByAttacker000000000000000"
		// Before any login, a request carrying an invented id gets a new one.
		_, id := call(t, http.MethodPost, base+"/counter", planted)
		require.NotEmpty(t, id, "an id the storage never issued must be replaced")
		assert.NotEqual(t, planted, id)
		assert.NoFileExists(t, gfsession.FileSessionPath(storage, planted))
		_, id = call(t, http.MethodPost, base+"/login?user=victim", planted)
		require.NotEmpty(t, id)
		assert.NotEqual(t, planted, id, "the server must not adopt a client-chosen id")
		body, _ := call(t, http.MethodGet, base+"/me", planted)
		assert.Empty(t, body["user"], "the planted id is not logged in")
		assert.NoFileExists(t, gfsession.FileSessionPath(storage, planted))
	})

	t.Run("hostile ids", func(t *testing.T) {
		hostile := []string{"../x", "../../etc/passwd", "..%2F..%2Fx", strings.Repeat("a", 10*1024),
			"*", "a*", "[a-z]", "?", "{user}x", "{a}{b}", "x\x00y", "x\ry"}
		for _, id := range hostile {
			code := rawGet(t, base, "/me", id)
			assert.Contains(t, []int{http.StatusOK, http.StatusBadRequest}, code, "%.20q", id)
		}
		// Nothing but valid session files was ever created, and nothing at all
		// outside the session folder.
		for _, f := range listFiles(t, root) {
			require.True(t, strings.HasPrefix(f, "sessions"+string(filepath.Separator)), "file outside the session folder: %s", f)
			name := strings.TrimSuffix(filepath.Base(f), ".session")
			assert.True(t, gfsession.IsValidSessionId(name), "unexpected file %s", f)
		}
	})

	t.Run("tampered sealed session", func(t *testing.T) {
		_, id := call(t, http.MethodPost, base+"/login?user=mallory", "")
		require.NotEmpty(t, id)
		path := gfsession.FileSessionPath(storage, id)
		blob, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.NotContains(t, string(blob), "mallory", "a sealed session file must not show its content")
		blob[len(blob)-5] ^= 0x01
		require.NoError(t, os.WriteFile(path, blob, 0o600))
		body, newId := call(t, http.MethodGet, base+"/me", id)
		assert.Empty(t, body["user"], "a tampered session reads as no session")
		assert.Empty(t, newId, "a read-only request gets no new cookie")
		_, newId = call(t, http.MethodPost, base+"/counter", id)
		assert.NotEmpty(t, newId, "a write goes to a new id")
		assert.NotEqual(t, id, newId)
	})

	t.Run("expired session replay", func(t *testing.T) {
		_, id := call(t, http.MethodPost, base+"/login?user=ann", "")
		require.NotEmpty(t, id)
		body, _ := call(t, http.MethodGet, base+"/me", id)
		require.Equal(t, "ann", body["user"])
		// Let it expire; a request in between would slide the TTL.
		time.Sleep(2 * ttl)
		body, newId := call(t, http.MethodPost, base+"/counter", id)
		assert.NotEqual(t, id, newId, "an expired id is replaced, not revived")
		body, _ = call(t, http.MethodGet, base+"/me", id)
		assert.Empty(t, body["user"], "replaying the expired cookie logs nobody in")
		assert.EqualValues(t, 0, body["counter"], "the write after expiry went to the new id, not the old one")
	})
}
