// Package v1 defines the example's JSON API.
package v1

import "github.com/gogf/gf/v2/frame/g"

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
