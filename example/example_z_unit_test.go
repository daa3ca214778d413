package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"

	"github.com/goframe-contrib/gfsession/example/internal/cmd"
)

// device is one browser of a user: a cookie jar of its own.
type device struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newDevice(t *testing.T, base string) *device {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &device{t: t, base: base, client: &http.Client{Jar: jar}}
}

// call sends one API request and returns the HTTP status, gf's envelope
// code and its data.
func (d *device) call(method, path string, body any) (status, code int, data map[string]any) {
	d.t.Helper()
	var payload bytes.Buffer
	if body != nil {
		require.NoError(d.t, json.NewEncoder(&payload).Encode(body))
	}
	req, err := http.NewRequest(method, d.base+path, &payload)
	require.NoError(d.t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "example-test")
	res, err := d.client.Do(req)
	require.NoError(d.t, err)
	defer res.Body.Close()
	var envelope struct {
		Code int            `json:"code"`
		Data map[string]any `json:"data"`
	}
	require.NoError(d.t, json.NewDecoder(res.Body).Decode(&envelope))
	return res.StatusCode, envelope.Code, envelope.Data
}

// ok is call for a request that must succeed.
func (d *device) ok(method, path string, body any) map[string]any {
	d.t.Helper()
	status, code, data := d.call(method, path, body)
	require.Equal(d.t, http.StatusOK, status)
	require.Zero(d.t, code, "%s %s: %v", method, path, data)
	return data
}

func (d *device) loggedIn() bool {
	return d.ok(http.MethodGet, "/api/me", nil)["loggedIn"] == true
}

// devices returns the device list: handle -> current.
func (d *device) devices() map[string]bool {
	d.t.Helper()
	list, _ := d.ok(http.MethodGet, "/api/devices", nil)["devices"].([]any)
	out := map[string]bool{}
	for _, item := range list {
		info := item.(map[string]any)
		out[info["handle"].(string)] = info["current"] == true
	}
	return out
}

// TestExample_Devices drives the example's server, with its config file,
// from several devices of one user over HTTP: the device list, signing one
// device out by handle, "sign out all others", and the guarded online
// users endpoint.
func TestExample_Devices(t *testing.T) {
	s := cmd.Server()
	s.SetAddr("127.0.0.1:0")
	s.SetDumpRouterMap(false)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown() })
	base := fmt.Sprintf("http://127.0.0.1:%d", s.GetListenedPort())

	user := "ann-" + gfsession.NewSessionId()[:8]
	a, b := newDevice(t, base), newDevice(t, base)
	a.ok(http.MethodPost, "/api/login", map[string]any{"username": user})
	b.ok(http.MethodPost, "/api/login", map[string]any{"username": user})

	devices := a.devices()
	require.Len(t, devices, 2)
	raw, _ := a.ok(http.MethodGet, "/api/devices", nil)["devices"].([]any)
	for _, item := range raw {
		assert.Equal(t, "example-test", item.(map[string]any)["userAgent"], "clientInfo: true in the config")
	}
	var other string
	current := 0
	for handle, isCurrent := range devices {
		require.True(t, gfsession.IsHandle(handle))
		if isCurrent {
			current++
		} else {
			other = handle
		}
	}
	assert.Equal(t, 1, current, "one device is this one")
	assert.Equal(t, map[string]bool{other: true}, map[string]bool{other: b.devices()[other]}, "B sees itself as current")

	// A signs B out by B's handle; B's next request is anonymous.
	a.ok(http.MethodPost, "/api/devices/signout", map[string]any{"handle": other})
	assert.False(t, b.loggedIn(), "the device signed out is still logged in")
	assert.True(t, a.loggedIn())
	assert.Len(t, a.devices(), 1)

	// A handle that is not one of the user's own devices signs nothing out.
	stranger := newDevice(t, base)
	stranger.ok(http.MethodPost, "/api/login", map[string]any{"username": "bob-" + gfsession.NewSessionId()[:8]})
	_, code, _ := stranger.call(http.MethodPost, "/api/devices/signout", map[string]any{"handle": onlyHandle(t, a.devices())})
	assert.NotZero(t, code, "another user signed a device out")
	assert.True(t, a.loggedIn(), "another user's request signed A out")

	// Sign out all others.
	b.ok(http.MethodPost, "/api/login", map[string]any{"username": user})
	c := newDevice(t, base)
	c.ok(http.MethodPost, "/api/login", map[string]any{"username": user})
	assert.EqualValues(t, 2, a.ok(http.MethodPost, "/api/devices/signout-others", nil)["signedOut"])
	assert.False(t, b.loggedIn())
	assert.False(t, c.loggedIn())
	assert.True(t, a.loggedIn())

	// Online users: forbidden but to the admin user of the config.
	status, code, _ := a.call(http.MethodGet, "/api/online", nil)
	assert.Equal(t, http.StatusForbidden, status)
	assert.NotZero(t, code)
	admin := newDevice(t, base)
	admin.ok(http.MethodPost, "/api/login", map[string]any{"username": "admin"})
	online := admin.ok(http.MethodGet, "/api/online", nil)
	found := false
	for _, item := range online["users"].([]any) {
		u := item.(map[string]any)
		if u["user"] == user {
			found = true
			assert.EqualValues(t, 1, u["sessions"])
		}
	}
	assert.True(t, found, "the user is not among the online users: %v", online)
	assert.GreaterOrEqual(t, online["count"], float64(3), "ann, bob and admin are online")
}

// onlyHandle returns the one handle of `devices`.
func onlyHandle(t *testing.T, devices map[string]bool) string {
	require.Len(t, devices, 1)
	for h := range devices {
		return h
	}
	return ""
}
