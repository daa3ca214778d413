package gfsession

import (
	"context"
	"sync"
	"time"
)

// background is a storage's periodic work (a cleaner or sweeper): one
// goroutine that the storage owns, started only for an interval > 0 and
// stopped by the storage's Close. The zero value is a task that never ran.
type background struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
	once   sync.Once
}

// start calls `fn` every `interval` until stop. The context given to `fn`
// is cancelled by stop, so long work (a cleanup in batches) ends early. With
// `interval` <= 0 it starts nothing.
func (b *background) start(interval time.Duration, fn func(ctx context.Context)) {
	if interval <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel, b.done = cancel, make(chan struct{})
	go func() {
		defer close(b.done)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				fn(ctx)
			}
		}
	}()
}

// stop cancels the work and waits until its goroutine has returned. It is
// idempotent and does nothing for a task that never started.
func (b *background) stop() {
	b.once.Do(func() {
		if b.cancel != nil {
			b.cancel()
			<-b.done
		}
	})
}
