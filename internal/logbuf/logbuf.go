// Package logbuf batches log output. One write system call per access-log
// line was a tenth of a forward-auth request's CPU (docs/BENCHMARKS.md,
// "Hot path"); a Writer collects lines in memory and writes them out
// together: Interval after the first line that waits, at once when the
// buffer would overflow or a record of Handler's level arrives, and on
// Close. slog stays the logging API: a Writer sits under any slog handler.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Writer buffers whole records (slog handlers write one record per call)
// and writes them to the underlying writer in batches. It is safe for
// concurrent use.
type Writer struct {
	w        io.Writer
	size     int
	interval time.Duration

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer // armed while buf holds lines
	armed bool
	err   error // the last failed write, reported by Flush
}

// New returns a Writer over w holding up to size bytes, written out at the
// latest interval after the first of them arrived.
func New(w io.Writer, size int, interval time.Duration) *Writer {
	b := &Writer{w: w, size: size, interval: interval, buf: make([]byte, 0, size)}
	b.timer = time.AfterFunc(time.Hour, func() { _ = b.Flush() })
	b.timer.Stop()
	return b
}

// Write adds p to the buffer. A record that does not fit is written after
// what is buffered, directly, so records are never split or reordered.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > b.size {
		b.flushLocked()
		if len(p) > b.size {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	if !b.armed {
		b.armed = true
		b.timer.Reset(b.interval)
	}
	return len(p), nil
}

// Flush writes out what is buffered, and reports the last write error
// since the previous Flush.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	err := b.err
	b.err = nil
	return err
}

func (b *Writer) flushLocked() {
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err // the lines are lost either way; a log has nowhere to report it
	}
	b.buf = b.buf[:0]
}

// Close flushes (at shutdown). The Writer stays usable: a record written
// later is written out like any other.
func (b *Writer) Close() error { return b.Flush() }

// Handler returns h, flushing w after each record at level or above: a
// warning or an error is out at once, not an interval later.
func Handler(h slog.Handler, w *Writer, level slog.Level) slog.Handler {
	return flushing{Handler: h, w: w, level: level}
}

type flushing struct {
	slog.Handler
	w     *Writer
	level slog.Level
}

func (f flushing) Handle(ctx context.Context, r slog.Record) error {
	err := f.Handler.Handle(ctx, r)
	if r.Level >= f.level {
		if ferr := f.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (f flushing) WithAttrs(as []slog.Attr) slog.Handler {
	return flushing{Handler: f.Handler.WithAttrs(as), w: f.w, level: f.level}
}

func (f flushing) WithGroup(name string) slog.Handler {
	return flushing{Handler: f.Handler.WithGroup(name), w: f.w, level: f.level}
}
