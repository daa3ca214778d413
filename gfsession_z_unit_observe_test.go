package gfsession_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gogf/gf/v2/os/gmetric"
	"github.com/gogf/gf/v2/os/gsession"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goframe-contrib/gfsession"
	"github.com/goframe-contrib/gfsession/storagetest"
)

// recordingProvider is a gmetric.Provider that keeps what it is given, the
// way an exporter (gf's otelmetric) would receive it, so a test can read the
// counters back. Values are keyed "name{backend,operation}".
type recordingProvider struct {
	mu     sync.Mutex
	values map[string]float64
}

func (p *recordingProvider) key(name string, opts []gmetric.Option) string {
	var backend, op string
	for _, o := range opts {
		for _, a := range o.Attributes {
			switch a.Key() {
			case "backend":
				backend = fmt.Sprint(a.Value())
			case "operation":
				op = fmt.Sprint(a.Value())
			}
		}
	}
	return fmt.Sprintf("%s{%s,%s}", name, backend, op)
}

func (p *recordingProvider) add(name string, v float64, opts []gmetric.Option) {
	p.mu.Lock()
	p.values[p.key(name, opts)] += v
	p.mu.Unlock()
}

func (p *recordingProvider) get(name, backend, op string) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.values[fmt.Sprintf("%s{%s,%s}", name, backend, op)]
}

func (p *recordingProvider) SetAsGlobal() {
	gmetric.SetGlobalProvider(p)
	for _, m := range gmetric.GetAllMetrics() {
		if i, ok := m.(gmetric.MetricInitializer); ok {
			_ = i.Init(p)
		}
	}
}
func (p *recordingProvider) MeterPerformer(gmetric.MeterOption) gmetric.MeterPerformer { return p }
func (p *recordingProvider) ForceFlush(context.Context) error                          { return nil }
func (p *recordingProvider) Shutdown(context.Context) error                            { return nil }
func (p *recordingProvider) CounterPerformer(name string, _ gmetric.MetricOption) (gmetric.CounterPerformer, error) {
	return recorder{p, name}, nil
}
func (p *recordingProvider) UpDownCounterPerformer(name string, _ gmetric.MetricOption) (gmetric.UpDownCounterPerformer, error) {
	return recorder{p, name}, nil
}
func (p *recordingProvider) HistogramPerformer(name string, _ gmetric.MetricOption) (gmetric.HistogramPerformer, error) {
	return recorder{p, name}, nil
}
func (p *recordingProvider) ObservableCounterPerformer(string, gmetric.MetricOption) (gmetric.ObservableCounterPerformer, error) {
	return nil, errors.New("not recorded")
}
func (p *recordingProvider) ObservableUpDownCounterPerformer(string, gmetric.MetricOption) (gmetric.ObservableUpDownCounterPerformer, error) {
	return nil, errors.New("not recorded")
}
func (p *recordingProvider) ObservableGaugePerformer(string, gmetric.MetricOption) (gmetric.ObservableGaugePerformer, error) {
	return nil, errors.New("not recorded")
}
func (p *recordingProvider) RegisterCallback(gmetric.Callback, ...gmetric.ObservableMetric) error {
	return nil
}

type recorder struct {
	p    *recordingProvider
	name string
}

func (r recorder) Inc(_ context.Context, o ...gmetric.Option) { r.p.add(r.name, 1, o) }
func (r recorder) Dec(_ context.Context, o ...gmetric.Option) { r.p.add(r.name, -1, o) }
func (r recorder) Add(_ context.Context, v float64, o ...gmetric.Option) {
	r.p.add(r.name, v, o)
}

// Record counts observations (histogram values are latencies: only their
// number is checked).
func (r recorder) Record(_ float64, o ...gmetric.Option) { r.p.add(r.name, 1, o) }

var (
	metricsOnce     sync.Once
	metricsProvider = &recordingProvider{values: map[string]float64{}}
)

func TestObserve_Metrics(t *testing.T) {
	metricsOnce.Do(metricsProvider.SetAsGlobal)
	ctx := context.Background()
	// A backend name of its own keeps the figures apart from other tests.
	gfsession.Register("memory-observed", func(ctx context.Context, config map[string]any) (gsession.Storage, error) {
		return gfsession.NewStorageMemory(), nil
	})
	st, err := gfsession.New(ctx, map[string]any{"type": "memory-observed", "metrics": true, "tracing": "true"})
	require.NoError(t, err)
	require.IsType(t, &gfsession.StorageObserved{}, st)
	t.Cleanup(func() { _ = st.(*gfsession.StorageObserved).Close(ctx) })
	m := gsession.New(time.Minute, st)

	id := storagetest.NewId()
	s := m.New(ctx, id)
	require.NoError(t, s.Set("k", "v")) // load (miss) + write
	require.NoError(t, s.Close())
	for i := 0; i < 3; i++ { // 3 loads (hits) + 3 TTL refreshes
		s = m.New(ctx, id)
		_, err = s.Get("k")
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	s = m.New(ctx, id)
	require.NoError(t, s.RemoveAll()) // load (hit) + delete + write of the emptied session
	require.NoError(t, s.Close())

	const b = "memory-observed"
	p := metricsProvider
	assert.Equal(t, 5.0, p.get(gfsession.MetricLoads, b, ""), "loads")
	assert.Equal(t, 4.0, p.get(gfsession.MetricHits, b, ""), "hits")
	assert.Equal(t, 1.0, p.get(gfsession.MetricMisses, b, ""), "misses")
	assert.Equal(t, 2.0, p.get(gfsession.MetricWrites, b, ""), "writes")
	assert.Equal(t, 1.0, p.get(gfsession.MetricDeletes, b, ""), "deletes")
	assert.Equal(t, 0.0, p.get(gfsession.MetricErrors, b, ""), "errors")
	assert.Equal(t, 5.0, p.get(gfsession.MetricDuration, b, "load"), "load latencies")
	assert.Equal(t, 3.0, p.get(gfsession.MetricDuration, b, "touch"), "touch latencies")

	// Errors are counted: a hostile id cannot be written.
	err = st.SetSession(ctx, "../x", nil, time.Minute)
	require.Error(t, err)
	assert.Equal(t, 1.0, p.get(gfsession.MetricErrors, b, ""), "errors")

	// Off by default.
	plain, err := gfsession.New(ctx, map[string]any{"type": "memory"})
	require.NoError(t, err)
	assert.IsType(t, &gfsession.StorageMemory{}, plain)
	_, err = gfsession.New(ctx, map[string]any{"type": "memory", "metrics": "often"})
	assert.ErrorContains(t, err, "sessionStorage.metrics")
}

// baseOnly is a custom storage that implements nothing: every method is
// gsession.StorageBase's, which answers gsession.ErrorDisabled.
type baseOnly struct{ gsession.StorageBase }

// TestObserve_DisabledIsNoError checks that gf's "this storage does not do
// that" answer is not counted as an error: a custom storage built on
// gsession.StorageBase would otherwise count an error on every request.
func TestObserve_DisabledIsNoError(t *testing.T) {
	metricsOnce.Do(metricsProvider.SetAsGlobal)
	ctx := context.Background()
	const b = "base-observed"
	st := gfsession.Observe(&baseOnly{}, gfsession.ObserveConfig{Backend: b, Metrics: true, Tracing: true})
	m := gsession.New(time.Minute, st)
	s := m.New(ctx, storagetest.NewId())
	require.NoError(t, s.Set("k", "v"))
	require.NoError(t, s.Close())
	require.NoError(t, s.RemoveAll())
	require.NoError(t, s.Close())
	assert.Equal(t, 1.0, metricsProvider.get(gfsession.MetricLoads, b, ""), "loads")
	assert.Equal(t, 2.0, metricsProvider.get(gfsession.MetricWrites, b, ""), "writes")
	assert.Equal(t, 1.0, metricsProvider.get(gfsession.MetricDeletes, b, ""), "deletes")
	assert.Equal(t, 0.0, metricsProvider.get(gfsession.MetricErrors, b, ""), "errors")
}

func TestObserve_Conformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) gsession.Storage {
		inner := gfsession.NewStorageMemory()
		t.Cleanup(func() { _ = inner.Close(context.Background()) })
		return gfsession.Observe(inner, gfsession.ObserveConfig{Backend: "memory", Metrics: true, Tracing: true})
	}, storagetest.MergesKeys(), storagetest.DropsStaleWrites(), storagetest.WithUserKey(func(t *testing.T, userKey string) gsession.Storage {
		inner := gfsession.NewStorageMemory(gfsession.MemoryConfig{UserKey: userKey})
		t.Cleanup(func() { _ = inner.Close(context.Background()) })
		return gfsession.Observe(inner, gfsession.ObserveConfig{Backend: "memory", Metrics: true})
	}), storagetest.WithMaxLifetime(func(t *testing.T, d time.Duration) gsession.Storage {
		inner := gfsession.NewStorageMemory(gfsession.MemoryConfig{MaxLifetime: d})
		t.Cleanup(func() { _ = inner.Close(context.Background()) })
		return gfsession.Observe(inner, gfsession.ObserveConfig{Backend: "memory", Metrics: true, Tracing: true})
	}), storagetest.RequireAll(),
		storagetest.Excuse("CorruptData", "memory keeps Go values, never a stored form"),
		storagetest.Excuse("CryptoKeys", "memory keeps Go values, never a stored form"),
		storagetest.Excuse("SealBoundToId", "memory keeps Go values, never a stored form"))
}
