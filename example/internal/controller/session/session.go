// Package session holds the handlers of the JSON API. They use gf's session
// API (r.Session) only: which storage keeps the data is a config decision.
package session

import (
	"context"
	"net/http"

	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/frame/g"
	"github.com/gogf/gf/v2/net/ghttp"

	"github.com/goframe-contrib/gfsession"

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

// Devices lists the sessions of the logged-in user: the storage's user
// index (`userKey: "user"` in the config) names them by handle.
func (c *ControllerV1) Devices(ctx context.Context, req *v1.DevicesReq) (res *v1.DevicesRes, err error) {
	devices, err := userDevices(g.RequestFromCtx(ctx))
	if err != nil {
		return nil, err
	}
	return &v1.DevicesRes{Devices: devices}, nil
}

// userDevices returns the sessions of the logged-in user of `r`.
func userDevices(r *ghttp.Request) ([]gfsession.SessionInfo, error) {
	if r.Session.MustGet(keyUser).IsNil() {
		return nil, errNotLoggedIn()
	}
	return gfsession.UserSessions(r)
}

// SignOutDevice destroys one session of the logged-in user, by handle. The
// handle must be one of the user's own sessions: a handle is no secret,
// and nobody may sign out another user's device.
func (c *ControllerV1) SignOutDevice(ctx context.Context, req *v1.SignOutDeviceReq) (res *v1.SignOutDeviceRes, err error) {
	r := g.RequestFromCtx(ctx)
	devices, err := userDevices(r)
	if err != nil {
		return nil, err
	}
	for _, d := range devices {
		if d.Handle != req.Handle {
			continue
		}
		admin, err := gfsession.AdminOf(r)
		if err != nil {
			return nil, err
		}
		if d.Current {
			// This device: an ordinary logout.
			return &v1.SignOutDeviceRes{}, r.Session.RemoveAll()
		}
		return &v1.SignOutDeviceRes{}, admin.DestroyHandle(ctx, d.Handle)
	}
	return nil, gerror.NewCode(gcode.CodeNotFound, "no such device")
}

// SignOutOthers destroys every session of the logged-in user but this one.
func (c *ControllerV1) SignOutOthers(ctx context.Context, req *v1.SignOutOthersReq) (res *v1.SignOutOthersRes, err error) {
	r := g.RequestFromCtx(ctx)
	if r.Session.MustGet(keyUser).IsNil() {
		return nil, errNotLoggedIn()
	}
	n, err := gfsession.SignOutOthers(r)
	if err != nil {
		return nil, err
	}
	return &v1.SignOutOthersRes{SignedOut: n}, nil
}

// Online lists the users with live sessions and their number of sessions,
// for the user `example.adminUser` of the config only.
func (c *ControllerV1) Online(ctx context.Context, req *v1.OnlineReq) (res *v1.OnlineRes, err error) {
	r := g.RequestFromCtx(ctx)
	adminUser := g.Cfg().MustGet(ctx, "example.adminUser").String()
	if user := r.Session.MustGet(keyUser); adminUser == "" || user.IsNil() || user.String() != adminUser {
		r.Response.WriteHeader(http.StatusForbidden)
		return nil, gerror.NewCode(gcode.CodeNotAuthorized, "only the example's admin user may list online users")
	}
	admin, err := gfsession.AdminOf(r)
	if err != nil {
		return nil, err
	}
	res = &v1.OnlineRes{Users: []v1.OnlineUser{}}
	err = admin.Users(ctx, func(user string, sessions int) bool {
		res.Users = append(res.Users, v1.OnlineUser{User: user, Sessions: sessions})
		return len(res.Users) < 1000 // a page's worth
	})
	if err != nil {
		return nil, err
	}
	if res.Count, err = admin.CountUsers(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

func errNotLoggedIn() error {
	return gerror.NewCode(gcode.CodeNotAuthorized, "not logged in")
}
