package realtime

import "sync/atomic"

// Runner runs a connection's work in a goroutine of its own only while
// there is some, so that an idle connection holds none. Poke starts a run
// unless one is going; a poke during a run makes it go round again. At most
// one run goes at a time, so the work's own state passes from one run to
// the next without a lock. SSE streams and the Pusher door's sockets use it.
type Runner struct {
	// Step does what there is to do now, and reports whether the
	// connection goes on: after false, no run ever starts again.
	Step func() bool

	running atomic.Bool // a run is going, or held, or the connection is over
	pending atomic.Bool // poked since the run last looked
}

// Hold keeps runs from starting while the connection is being set up;
// pokes meanwhile are kept for Release.
func (r *Runner) Hold() { r.running.Store(true) }

// Release ends Hold, and runs Step once if it may have work.
func (r *Runner) Release() {
	r.running.Store(false)
	r.Poke()
}

// Poke says there may be something to do. It never blocks.
func (r *Runner) Poke() {
	r.pending.Store(true)
	if r.running.CompareAndSwap(false, true) {
		go r.run()
	}
}

func (r *Runner) run() {
	for {
		r.pending.Store(false)
		if !r.Step() {
			return // running stays set: no run starts again
		}
		// Idle: stop, unless a poke came since the top of the loop, which
		// either set pending before running is cleared, or sees running
		// cleared and starts another run.
		r.running.Store(false)
		if !r.pending.Load() || !r.running.CompareAndSwap(false, true) {
			return
		}
	}
}
