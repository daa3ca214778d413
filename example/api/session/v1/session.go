// Package v1 defines the example's JSON API.
package v1

import (
	"github.com/gogf/gf/v2/frame/g"

	"github.com/goframe-contrib/gfsession"
)

// LoginReq logs a user in: it stores the name in the session and gives the
// session a new id.
type LoginReq struct {
	g.Meta   `path:"/login" method:"post" tags:"Session" summary:"Log in"`
	Username string `json:"username" v:"required|length:1,64#username is required|username is 1 to 64 characters"`
}

type LoginRes struct {
	User string `json:"user"`
}

// MeReq reads the session without writing it.
type MeReq struct {
	g.Meta `path:"/me" method:"get" tags:"Session" summary:"Who am I"`
}

type MeRes struct {
	LoggedIn bool   `json:"loggedIn"`
	User     string `json:"user"`
	Counter  int64  `json:"counter"`
}

// CounterReq increments the counter kept in the session.
type CounterReq struct {
	g.Meta `path:"/counter" method:"post" tags:"Session" summary:"Increment the counter"`
}

type CounterRes struct {
	Counter int64 `json:"counter"`
}

// LogoutReq deletes the whole session.
type LogoutReq struct {
	g.Meta `path:"/logout" method:"post" tags:"Session" summary:"Log out"`
}

type LogoutRes struct{}

// DevicesReq lists the sessions of the logged-in user ("your devices").
type DevicesReq struct {
	g.Meta `path:"/devices" method:"get" tags:"Devices" summary:"Your devices"`
}

type DevicesRes struct {
	// Devices are the user's live sessions, the most recently active first,
	// this one marked current. A session is named by its handle, never by
	// its id: the page never sees another device's cookie.
	Devices []gfsession.SessionInfo `json:"devices"`
}

// SignOutDeviceReq signs one of the user's devices out, by handle.
type SignOutDeviceReq struct {
	g.Meta `path:"/devices/signout" method:"post" tags:"Devices" summary:"Sign a device out"`
	Handle string `json:"handle" v:"required#handle is required"`
}

type SignOutDeviceRes struct{}

// SignOutOthersReq signs out every device of the user but this one.
type SignOutOthersReq struct {
	g.Meta `path:"/devices/signout-others" method:"post" tags:"Devices" summary:"Sign out all other devices"`
}

type SignOutOthersRes struct {
	SignedOut int `json:"signedOut"`
}

// OnlineReq lists the users with live sessions. Only the user named by
// `example.adminUser` in the config may call it: it is an example of the
// Admin API, not an admin panel.
type OnlineReq struct {
	g.Meta `path:"/online" method:"get" tags:"Admin" summary:"Online users"`
}

type OnlineUser struct {
	User     string `json:"user"`
	Sessions int    `json:"sessions"`
}

type OnlineRes struct {
	Count int          `json:"count"`
	Users []OnlineUser `json:"users"`
}
