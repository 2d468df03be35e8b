package realtime

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Runner runs a connection's work only while there is some, so that an
// idle connection holds no goroutine. Poke starts a run unless one is
// going; a poke during a run makes it go round again. At most one run goes
// at a time, so the work's own state passes from one run to the next
// without a lock. SSE streams and the Pusher door's sockets use it.
//
// Runs go to a few writers, one per core, that take poked connections in
// turn, rather than to a goroutine each: an event for 1,000 streams is
// then 1,000 steps on two goroutines whose stacks have already grown, not
// 1,000 goroutines started, grown and scheduled (delivery p99 at 1,000
// subscribers fell by about 40 %; docs/benchmarks.md). A writer must never
// wait for one connection while others queue behind it, so a step calls
// Blocking before anything that may wait (a write to a full socket, a read
// from the store): its run leaves the writers, which start another writer
// in its place, and finishes on its own goroutine.
type Runner struct {
	// Step does what there is to do now, and reports whether the
	// connection goes on: after false, no run ever starts again.
	Step func() bool

	running atomic.Bool // a run is going, or held, or the connection is over
	pending atomic.Bool // poked since the run last looked
	pooled  bool        // the run is on a writer; only the run touches it
}

// writers is the queue of poked connections the writers take runs from.
// When it is full, a run starts a goroutine of its own.
var writers struct {
	once  sync.Once
	queue chan *Runner
}

// writerQueue is how many poked connections may wait for a writer: enough
// for one event to 10,000 streams of a channel at once.
const writerQueue = 1 << 14

func dispatch(r *Runner) {
	writers.once.Do(func() {
		writers.queue = make(chan *Runner, writerQueue)
		for range runtime.GOMAXPROCS(0) {
			go writer()
		}
	})
	select {
	case writers.queue <- r:
	default:
		go r.run()
	}
}

// writer runs poked connections' steps, one at a time, until one of them
// blocks and takes this goroutine with it.
func writer() {
	for r := range writers.queue {
		if r.runOnce() {
			return // Blocking started another writer
		}
	}
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
		dispatch(r)
	}
}

// Blocking is Step's call before it does something that may wait: on a
// writer, the run goes on in this goroutine and another writer takes its
// place. Only Step may call it.
func (r *Runner) Blocking() {
	if r.pooled {
		r.pooled = false
		go writer()
	}
}

// runOnce is one step on a writer; a poke since its start puts the
// connection back in the queue, behind the others. It reports whether the
// step blocked: the writer's goroutine is then the run's.
func (r *Runner) runOnce() (left bool) {
	r.pending.Store(false)
	r.pooled = true
	goOn := r.Step()
	left, r.pooled = !r.pooled, false
	if !goOn {
		return left // running stays set: no run starts again
	}
	if left {
		r.idle() // finish on this goroutine, as run would
		return true
	}
	r.running.Store(false)
	if r.pending.Load() && r.running.CompareAndSwap(false, true) {
		dispatch(r)
	}
	return false
}

// run steps until there is nothing to do, in a goroutine of its own.
func (r *Runner) run() {
	r.pending.Store(false)
	if r.Step() {
		r.idle()
	}
}

// idle ends a run that stepped and goes on, unless a poke came since it
// last looked, which either set pending before running is cleared, or sees
// running cleared and starts another run.
func (r *Runner) idle() {
	for {
		r.running.Store(false)
		if !r.pending.Load() || !r.running.CompareAndSwap(false, true) {
			return
		}
		r.pending.Store(false)
		if !r.Step() {
			return
		}
	}
}
