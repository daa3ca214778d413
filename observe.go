package gfsession

import (
	"context"
	"time"

	"github.com/gogf/gf/v2"
	"github.com/gogf/gf/v2/container/gmap"
	"github.com/gogf/gf/v2/errors/gcode"
	"github.com/gogf/gf/v2/errors/gerror"
	"github.com/gogf/gf/v2/net/gtrace"
	"github.com/gogf/gf/v2/os/gmetric"
	"github.com/gogf/gf/v2/os/gsession"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
)

// Metric names, all with the attribute `backend` (the storage's type name);
// the duration histogram also has `operation` (load, write, touch, delete).
const (
	MetricLoads    = "gfsession.loads"            // sessions loaded (GetSession calls)
	MetricHits     = "gfsession.hits"             // loads that found a session
	MetricMisses   = "gfsession.misses"           // loads that found none (missing, expired, invalid or corrupt)
	MetricWrites   = "gfsession.writes"           // sessions written (SetSession calls)
	MetricDeletes  = "gfsession.deletes"          // sessions deleted (RemoveAll calls)
	MetricErrors   = "gfsession.errors"           // backend calls that returned an error
	MetricDuration = "gfsession.backend.duration" // backend call latency, milliseconds
)

// ObserveConfig says what Observe records.
type ObserveConfig struct {
	// Backend names the storage in the `backend` attribute, e.g. "redis".
	// New sets it to the storage's type; it is no config map key.
	Backend string `json:"-"`
	// Metrics records the counters and the latency histogram through gf's
	// gmetric; they reach an exporter once the application sets a gmetric
	// provider (for example gf's otelmetric). Config map: `metrics`.
	Metrics bool `json:"metrics"`
	// Tracing opens a span per backend call through gf's gtrace
	// (OpenTelemetry), named "gfsession.<Method>". Config map: `tracing`.
	Tracing bool `json:"tracing"`
}

var (
	meter = gmetric.GetGlobalProvider().Meter(gmetric.MeterOption{
		Instrument:        "github.com/goframe-contrib/gfsession",
		InstrumentVersion: gf.VERSION,
	})
	metricLoads    = meter.MustCounter(MetricLoads, gmetric.MetricOption{Help: "Sessions loaded from the storage."})
	metricHits     = meter.MustCounter(MetricHits, gmetric.MetricOption{Help: "Session loads that found a session."})
	metricMisses   = meter.MustCounter(MetricMisses, gmetric.MetricOption{Help: "Session loads that found no session."})
	metricWrites   = meter.MustCounter(MetricWrites, gmetric.MetricOption{Help: "Sessions written to the storage."})
	metricDeletes  = meter.MustCounter(MetricDeletes, gmetric.MetricOption{Help: "Sessions deleted from the storage."})
	metricErrors   = meter.MustCounter(MetricErrors, gmetric.MetricOption{Help: "Storage calls that failed."})
	metricDuration = meter.MustHistogram(MetricDuration, gmetric.MetricOption{
		Help:    "Latency of storage calls.",
		Unit:    "ms",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000},
	})
)

// StorageObserved is a storage wrapped by Observe. It passes every call to
// the storage it wraps, and Close and the Admin methods too when that
// storage has them.
type StorageObserved struct {
	gsession.Storage
	config ObserveConfig
	// Prepared options, so recording allocates nothing per call.
	attrs                      gmetric.Option
	load, write, touch, remove gmetric.Option
	spanAttr                   attribute.KeyValue
}

// Observe wraps `storage` so that its loads, writes, TTL refreshes and
// deletes are counted and timed through gf's gmetric and traced through
// gf's gtrace, as `config` says. Both are off unless asked for; from a
// config file, set `metrics: true` and/or `tracing: true` in the
// `sessionStorage` node. It works for any gsession.Storage, custom ones too.
func Observe(storage gsession.Storage, config ObserveConfig) *StorageObserved {
	backendAttr := gmetric.NewAttribute("backend", config.Backend)
	op := func(name string) gmetric.Option {
		return gmetric.Option{Attributes: gmetric.Attributes{backendAttr, gmetric.NewAttribute("operation", name)}}
	}
	return &StorageObserved{
		Storage:  storage,
		config:   config,
		attrs:    gmetric.Option{Attributes: gmetric.Attributes{backendAttr}},
		load:     op("load"),
		write:    op("write"),
		touch:    op("touch"),
		remove:   op("delete"),
		spanAttr: attribute.String("session.backend", config.Backend),
	}
}

// Unwrap returns the storage that `s` observes.
func (s *StorageObserved) Unwrap() gsession.Storage { return s.Storage }

// begin starts timing (and a span) for one backend call.
func (s *StorageObserved) begin(ctx context.Context, name string) (context.Context, *gtrace.Span, time.Time) {
	var span *gtrace.Span
	if s.config.Tracing {
		caller := ctx
		ctx, span = gtrace.NewSpan(ctx, name)
		if caller.Value(callerCtxKey{}) == nil {
			// The wrapped storage tells requests apart by context (see
			// ctxKey): the span's context stands for the caller's.
			ctx = context.WithValue(ctx, callerCtxKey{}, caller)
		}
		span.SetAttributes(s.spanAttr)
	}
	return ctx, span, time.Now()
}

// end records the call that `begin` started. gsession.ErrorDisabled, gf's way
// of saying a storage does not do this (gsession.StorageBase), is not a
// failure.
func (s *StorageObserved) end(ctx context.Context, span *gtrace.Span, start time.Time, op gmetric.Option, counter gmetric.Counter, err error) {
	if err != nil && gerror.Is(err, gsession.ErrorDisabled) {
		err = nil
	}
	if s.config.Metrics {
		metricDuration.Record(float64(time.Since(start))/float64(time.Millisecond), op)
		if counter != nil {
			counter.Inc(ctx, s.attrs)
		}
		if err != nil {
			metricErrors.Inc(ctx, s.attrs)
		}
	}
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// GetSession loads the session through the wrapped storage and counts a
// load and a hit or a miss.
func (s *StorageObserved) GetSession(ctx context.Context, sessionId string, ttl time.Duration) (*gmap.StrAnyMap, error) {
	ctx, span, start := s.begin(ctx, "gfsession.GetSession")
	data, err := s.Storage.GetSession(ctx, sessionId, ttl)
	s.end(ctx, span, start, s.load, metricLoads, err)
	if s.config.Metrics && err == nil {
		if data != nil && data.Size() > 0 {
			metricHits.Inc(ctx, s.attrs)
		} else {
			metricMisses.Inc(ctx, s.attrs)
		}
	}
	return data, err
}

// SetSession writes the session through the wrapped storage and counts a
// write.
func (s *StorageObserved) SetSession(ctx context.Context, sessionId string, sessionData *gmap.StrAnyMap, ttl time.Duration) error {
	ctx, span, start := s.begin(ctx, "gfsession.SetSession")
	err := s.Storage.SetSession(ctx, sessionId, sessionData, ttl)
	s.end(ctx, span, start, s.write, metricWrites, err)
	return err
}

// UpdateTTL refreshes the TTL through the wrapped storage and times it.
func (s *StorageObserved) UpdateTTL(ctx context.Context, sessionId string, ttl time.Duration) error {
	ctx, span, start := s.begin(ctx, "gfsession.UpdateTTL")
	err := s.Storage.UpdateTTL(ctx, sessionId, ttl)
	s.end(ctx, span, start, s.touch, nil, err)
	return err
}

// RemoveAll deletes the session through the wrapped storage and counts a
// delete.
func (s *StorageObserved) RemoveAll(ctx context.Context, sessionId string) error {
	ctx, span, start := s.begin(ctx, "gfsession.RemoveAll")
	err := s.Storage.RemoveAll(ctx, sessionId)
	s.end(ctx, span, start, s.remove, metricDeletes, err)
	return err
}

// Close closes the wrapped storage if it has a Close method.
func (s *StorageObserved) Close(ctx context.Context) error {
	if c, ok := s.Storage.(interface{ Close(context.Context) error }); ok {
		return c.Close(ctx)
	}
	return nil
}

func (s *StorageObserved) admin() (Admin, error) {
	if a, ok := s.Storage.(Admin); ok {
		return a, nil
	}
	return nil, gerror.NewCodef(gcode.CodeNotSupported, "storage %T has no admin methods", s.Storage)
}

// Count passes to the wrapped storage's Admin.Count.
func (s *StorageObserved) Count(ctx context.Context) (int, error) {
	a, err := s.admin()
	if err != nil {
		return 0, err
	}
	return a.Count(ctx)
}

// Range passes to the wrapped storage's Admin.Range.
func (s *StorageObserved) Range(ctx context.Context, fn func(handle string) bool) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	return a.Range(ctx, fn)
}

// Destroy passes to the wrapped storage's Admin.Destroy.
func (s *StorageObserved) Destroy(ctx context.Context, sessionId string) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	return a.Destroy(ctx, sessionId)
}

// DestroyHandle passes to the wrapped storage's Admin.DestroyHandle.
func (s *StorageObserved) DestroyHandle(ctx context.Context, handle string) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	return a.DestroyHandle(ctx, handle)
}

// DestroyUser passes to the wrapped storage's Admin.DestroyUser.
func (s *StorageObserved) DestroyUser(ctx context.Context, userId string) (int, error) {
	a, err := s.admin()
	if err != nil {
		return 0, err
	}
	return a.DestroyUser(ctx, userId)
}

// DestroyUserExcept passes to the wrapped storage's Admin.DestroyUserExcept.
func (s *StorageObserved) DestroyUserExcept(ctx context.Context, userId, keep string) (int, error) {
	a, err := s.admin()
	if err != nil {
		return 0, err
	}
	return a.DestroyUserExcept(ctx, userId, keep)
}

// Sessions passes to the wrapped storage's Admin.Sessions.
func (s *StorageObserved) Sessions(ctx context.Context, userId string) ([]SessionInfo, error) {
	a, err := s.admin()
	if err != nil {
		return nil, err
	}
	return a.Sessions(ctx, userId)
}

// Users passes to the wrapped storage's Admin.Users.
func (s *StorageObserved) Users(ctx context.Context, fn func(userId string, sessions int) bool) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	return a.Users(ctx, fn)
}

// CountUsers passes to the wrapped storage's Admin.CountUsers.
func (s *StorageObserved) CountUsers(ctx context.Context) (int, error) {
	a, err := s.admin()
	if err != nil {
		return 0, err
	}
	return a.CountUsers(ctx)
}

// userKeyName is the wrapped storage's userKey, for SignOutOthers and
// UserSessions.
func (s *StorageObserved) userKeyName() string {
	if k, ok := s.Storage.(userKeyed); ok {
		return k.userKeyName()
	}
	return ""
}
