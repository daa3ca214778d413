// Package session holds the handlers of the JSON API. They use gf's session
// API (r.Session) only: which storage keeps the data is a config decision.
package session

import (
	"context"

	"github.com/gogf/gf/v2/frame/g"

	v1 "github.com/goframe-contrib/gfsession/example/api/session/v1"
)

const (
	keyUser    = "user"
	keyCounter = "counter"
)

type ControllerV1 struct{}

func NewV1() *ControllerV1 {
	return &ControllerV1{}
}

// Login stores the user name and rotates the session id (deleting the old
// one), so that an id known before the login is worthless after it. With
// gfsession.Middleware installed, the new id has 192 random bits.
func (c *ControllerV1) Login(ctx context.Context, req *v1.LoginReq) (res *v1.LoginRes, err error) {
	session := g.RequestFromCtx(ctx).Session
	if _, err = session.RegenerateId(true); err != nil {
		return nil, err
	}
	if err = session.Set(keyUser, req.Username); err != nil {
		return nil, err
	}
	return &v1.LoginRes{User: req.Username}, nil
}

// Me only reads the session. A read-only request still keeps the session
// alive: the storage restarts its idle TTL (sliding expiry).
func (c *ControllerV1) Me(ctx context.Context, req *v1.MeReq) (res *v1.MeRes, err error) {
	session := g.RequestFromCtx(ctx).Session
	user, err := session.Get(keyUser)
	if err != nil {
		return nil, err
	}
	counter, err := session.Get(keyCounter)
	if err != nil {
		return nil, err
	}
	return &v1.MeRes{
		LoggedIn: !user.IsNil(),
		User:     user.String(),
		Counter:  counter.Int64(),
	}, nil
}

// Counter increments a number kept in the session. gfsession's storages give
// it back as the int64 stored, not as a string or a json.Number.
func (c *ControllerV1) Counter(ctx context.Context, req *v1.CounterReq) (res *v1.CounterRes, err error) {
	session := g.RequestFromCtx(ctx).Session
	counter, err := session.Get(keyCounter)
	if err != nil {
		return nil, err
	}
	n := counter.Int64() + 1
	if err = session.Set(keyCounter, n); err != nil {
		return nil, err
	}
	return &v1.CounterRes{Counter: n}, nil
}

// Logout deletes the session from the storage.
func (c *ControllerV1) Logout(ctx context.Context, req *v1.LogoutReq) (res *v1.LogoutRes, err error) {
	if err = g.RequestFromCtx(ctx).Session.RemoveAll(); err != nil {
		return nil, err
	}
	return &v1.LogoutRes{}, nil
}
