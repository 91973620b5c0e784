package kuborpc

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrStalled: a call made no progress for its stall timeout (see PinAdd)
// and was canceled. It is transient: Retry tries again.
var ErrStalled = errors.New("kuborpc: stalled")

const (
	// minBackoff and maxBackoff bound the exponential backoff between
	// retries: 100ms, 200ms, 400ms... up to 5s.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: IsPermanent reports true for
// it and for any error wrapping it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether retrying err would fail again: err was marked
// with Permanent, or is an HTTPError with a 4xx status other than 408 and
// 429.
func IsPermanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return true
	}
	var he *HTTPError
	return errors.As(err, &he) && he.permanent()
}

// Backoff returns how long to wait before retry number attempt (1-based)
// after err: the RetryAfter of an HTTPError in err if it has one, else
// 100ms doubling up to 5s.
func Backoff(attempt int, err error) time.Duration {
	var he *HTTPError
	if errors.As(err, &he) && he.RetryAfter > 0 {
		return he.RetryAfter
	}
	d := minBackoff << min(max(attempt-1, 0), 16)
	return min(d, maxBackoff)
}

// Retry calls op until it succeeds, fails permanently (IsPermanent), ctx
// ends, or maxRetries retries have failed (maxRetries 0 means one call),
// waiting Backoff between calls. A wait longer than maxWait (a Retry-After
// beyond what the caller tolerates) gives up at once; maxWait <= 0 means
// no such bound. It returns nil, context.Cause(ctx) once ctx has ended, or
// op's last error: as is if it was permanent, else wrapped with why Retry
// gave up ("gave up after N attempts: …"). Callers wrap it with what they
// were doing.
func Retry(ctx context.Context, maxRetries int, maxWait time.Duration, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if IsPermanent(err) {
			return err
		}
		if attempt >= maxRetries {
			return fmt.Errorf("gave up after %d attempts: %w", attempt+1, err)
		}
		d := Backoff(attempt+1, err)
		if maxWait > 0 && d > maxWait {
			return fmt.Errorf("asked to retry after %v, beyond the longest wait (%v): %w", d, maxWait, err)
		}
		if !Sleep(ctx, d) {
			return context.Cause(ctx)
		}
	}
}

// Sleep waits d or until ctx ends, and reports whether d elapsed. It is
// Retry's wait, for callers that keep their own retry loop.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
