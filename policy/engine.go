package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/asynclog"
	"github.com/mxpolicyd/mxpolicyd/internal/panics"
	"github.com/mxpolicyd/mxpolicyd/internal/textlog"
)

// Step is one configured check with its own time limit and its failure
// action: what to answer when it errors or runs out of time.
type Step struct {
	Check   Check
	Timeout time.Duration
	OnError Action // DUNNO (fail open, the default) or a decisive action
	// ForSASL runs the check for SASL-authenticated clients even under
	// skip_sasl, which otherwise spares them every check: skip_sasl is
	// about the inbound checks, never about your users' rate limits.
	ForSASL bool
	// OwnTimeouts says the check times out only when something of ours is
	// stuck (its store), never because of a sender: after a few timeouts
	// in a row it is paused (pause.go).
	OwnTimeouts bool

	pause *pause // set by SetSteps when OwnTimeouts
}

// Recorder receives every decision after it is made: the decision log, the
// metrics. Record must not block; the reply does not wait for it.
type Recorder interface {
	Record(d *Decision)
}

// Decision is the outcome of one request, as logged and recorded.
type Decision struct {
	Time     time.Time
	Req      *Request
	Check    string        // the check that decided, "" if none did
	Action   Action        // what Postfix was told
	Would    Action        // observe mode: what enforcing would have answered
	Reason   string        // why
	Delay    time.Duration // greylisting delay of a triplet that passed
	Duration time.Duration // time spent deciding
	Errors   []CheckError  // checks that failed and how
	Timings  []CheckTiming // per-check latency
	Observe  bool          // the action was computed but not enforced
	Facts    Facts

	actionText string    // ActionText's, worked out once
	lineAt     time.Time // the log line's time (Engine.log)
}

// ActionText is Action as text (Action.String), made once for the log
// line and the decision log alike: a PREPEND carries its whole header.
// Decide hands the decision to its log and recorders one after the other,
// so the first call makes it.
func (d *Decision) ActionText() string {
	if d.actionText == "" {
		d.actionText = d.Action.String()
	}
	return d.actionText
}

// CheckError says which check failed and how.
type CheckError struct {
	Check string
	Err   error
	Kind  ErrorKind // timeout, temporary or permanent (KindOf)
}

// CheckTiming is how long one check took and how long it was given.
type CheckTiming struct {
	Check    string
	Duration time.Duration
	Share    time.Duration // its timeout, cut to what was left of the budget
}

// Options configure an Engine.
type Options struct {
	Budget   time.Duration // whole request, split among the steps; well under Postfix's timeout=10s
	SkipSASL bool          // answer DUNNO to SASL-authenticated clients
	Observe  bool          // compute and record every decision, always answer DUNNO
	Logger   *slog.Logger
	Now      func() time.Time
	Record   []Recorder
	// ClockOffset, when set, is how far the clock of the store the checks
	// share with other hosts is ahead of Now (db.DB.ClockOffset): the
	// time the checks see (State.Now) is shifted by it, so that every
	// host stores times on one clock. The decision's own time, its log
	// line and its timings stay on Now.
	ClockOffset func() time.Duration

	wallClock bool // Now is time.Now: a step's time is read once, not twice
}

// Engine decides requests. The order of checks is the order of the steps,
// set once and swapped whole on reload (SetSteps), never edited in place.
type Engine struct {
	opt  Options
	plan atomic.Pointer[plan]
	tune atomic.Pointer[Tuning]

	lastPanicLog atomic.Int64 // when a check's panic stack was last logged, Unix nanoseconds
}

// Tuning is what a reload may change besides the steps.
type Tuning struct {
	Budget   time.Duration
	SkipSASL bool
	Observe  bool
}

// NewEngine returns an engine running steps in order.
func NewEngine(opt Options, steps []Step) *Engine {
	if opt.Budget <= 0 {
		opt.Budget = 6 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
		opt.wallClock = true
	}
	e := &Engine{opt: opt}
	e.SetSteps(steps)
	e.SetTuning(Tuning{Budget: opt.Budget, SkipSASL: opt.SkipSASL, Observe: opt.Observe})
	return e
}

// SetTuning replaces the budget, the SASL rule and observe mode, for
// SIGHUP reloads (switching observe off is how a rollout starts enforcing).
func (e *Engine) SetTuning(t Tuning) {
	if t.Budget <= 0 {
		t.Budget = 6 * time.Second
	}
	e.tune.Store(&t)
}

// SetSteps replaces the checks, for SIGHUP reloads. Requests in flight
// finish with the steps they started with.
func (e *Engine) SetSteps(steps []Step) {
	steps = slices.Clone(steps)
	pauses := map[string]*pause{}
	old := e.plan.Load()
	for i := range steps {
		if !steps[i].OwnTimeouts {
			continue
		}
		name := steps[i].Check.Name()
		if pauses[name] == nil {
			pauses[name] = &pause{}
			if old != nil && old.pauses[name] != nil {
				pauses[name] = old.pauses[name] // a reload does not end a pause
			}
		}
		steps[i].pause = pauses[name]
	}
	p := newPlan(steps)
	p.pauses = pauses
	e.plan.Store(p)
}

// plan is the steps of each protocol stage, worked out once per SetSteps
// rather than per request: all of them, and those that run for a
// SASL-authenticated client under skip_sasl (Step.ForSASL); and the
// pause of each check with OwnTimeouts, by name, for the next SetSteps.
type plan struct {
	all, sasl map[string][]Step
	pauses    map[string]*pause
}

// The stages the engine decides at; at any other, it passes.
var stages = [...]string{"RCPT", "DATA", "END-OF-MESSAGE"}

func newPlan(steps []Step) *plan {
	p := &plan{all: map[string][]Step{}, sasl: map[string][]Step{}}
	for _, state := range stages {
		p.all[state] = stageSteps(state, steps)
		p.sasl[state] = slices.DeleteFunc(slices.Clone(p.all[state]), func(s Step) bool { return !s.ForSASL })
	}
	return p
}

// Decide answers one request. It returns within the budget whatever the
// checks do, because Postfix must never wait for its own timeout.
func (e *Engine) Decide(ctx context.Context, req *Request, msg *Message) Action {
	d := e.Evaluate(ctx, req, msg)
	e.log(d)
	for _, r := range e.opt.Record {
		r.Record(d)
	}
	return d.Action
}

// Evaluate computes the decision without logging or recording it; the
// check command uses it to explain a decision while writing nothing. It
// is the only place a Decision is built: the steps' verdict, then the
// queued header a DUNNO may carry, then observe mode.
func (e *Engine) Evaluate(ctx context.Context, req *Request, msg *Message) *Decision {
	start := e.opt.Now()
	tune := e.tune.Load()
	if msg == nil {
		msg = NewMessage(req.Instance)
	}
	ev := new(evaluation)
	v := e.decide(ctx, req, msg, start, tune, ev)
	d := &ev.d
	*d = Decision{Time: start, Req: req, Check: v.check, Action: v.res.Action, Reason: v.res.Reason,
		Delay: v.res.Delay, Errors: v.errors, Timings: v.timings, Observe: tune.Observe, Facts: v.facts}
	if d.Action.IsDunno() && canPrepend(req.ProtocolState) {
		if h, ok := msg.nextHeader(); ok {
			d.Action = Action{Verb: Prepend, Text: h}
		}
	}
	if tune.Observe {
		d.Would, d.Action = d.Action, DunnoAction
	}
	end := v.at // on the wall clock, the last step's end
	if !e.opt.wallClock || end.IsZero() {
		end = e.opt.Now()
	}
	d.Duration = end.Sub(start)
	return d
}

// canPrepend reports whether Postfix accepts PREPEND at this stage: it
// does at RCPT and DATA, not at END-OF-MESSAGE (access(5)). DATA matters
// for a one-recipient message: one reply carries one header, and a
// check_policy_service in smtpd_data_restrictions picks up the rest.
func canPrepend(state string) bool { return state == "RCPT" || state == "DATA" }

// evaluation is the memory one request's decision needs beyond its
// request: the Decision, the State its checks share and room for the
// timings of a plan of usual length, taken in one allocation rather than
// three (docs/PERFORMANCE.md, "Allocations of a request"). Whatever keeps
// one of them keeps all three, for as long as the longest-lived needs:
// the decision log's row and the log line read the Decision after Decide
// returns; the State is no check's after its call.
type evaluation struct {
	d       Decision
	st      State
	timings [4]CheckTiming
}

// verdict is what the steps concluded: the result that answers, the check
// it is charged to, and what the run left behind. Evaluate turns it into
// the Decision.
type verdict struct {
	res     Result // Delay: of the last check that reported one
	check   string // the check that decided, or that had the last say
	facts   Facts
	errors  []CheckError
	timings []CheckTiming
	// at is when the last step ended, read from the wall clock (run):
	// the next step's start and, after the last, the decision's end, so
	// that each step costs one reading of the clock, not two.
	at time.Time
}

// MessageCheck is a Check that also decides the message as a whole, once
// its recipients are known: greylisting's one verdict per message. The
// engine calls CheckMessage at DATA, where Postfix asks when
// check_policy_service is also in smtpd_data_restrictions, and where a
// DEFER_IF_PERMIT defers every recipient of the message at once. A message
// sent with BDAT is asked at its first chunk with protocol_state=DATA too
// (BDAT_README: policy queries behave "as if Postfix received (MAIL + RCPT
// + DATA + end-of-data)"). CheckMessage decides from the message's state
// in memory, never from a store: the step's pause (Step.OwnTimeouts) does
// not apply to it, so a message's DATA verdict is never skipped, and its
// quick answer never counts as the store answering in time.
type MessageCheck interface {
	Check
	CheckMessage(ctx context.Context, st *State) (Result, error)
}

// EndOfMessageCheck is a Check that also decides at END-OF-MESSAGE, the
// first stage at which Postfix sends the message's real size
// (SMTPD_POLICY_README, "size"), when check_policy_service is also in
// smtpd_end_of_data_restrictions (postconf(5)): byte quotas. If the check
// is also a QuickCheck, its Quick is asked first at END-OF-MESSAGE too, so
// it must answer for the request's stage: a request no quota applies to
// then never reaches CheckEndOfMessage, nor counts for the step's pause.
type EndOfMessageCheck interface {
	Check
	CheckEndOfMessage(ctx context.Context, st *State) (Result, error)
}

// AttemptRecorder is a Check that keeps state about attempts
// (greylisting's triplets). Postfix goes on evaluating its restrictions
// after a defer_if_permit ("defer the request if some later restriction
// would result in an explicit or implicit PERMIT action", access(5)), so
// a greylisting policy service placed after an SPF one sees the attempts
// the SPF one deferred. When a check answers DEFER_IF_PERMIT, the engine
// lets the recorders after it record the attempt (recordAttempt), each
// under its step's timeout and pause, with no say in the verdict.
type AttemptRecorder interface {
	Check
	RecordAttempt(ctx context.Context, st *State) error
}

// recording runs an AttemptRecorder as a Check that answers DUNNO, so
// that the engine's call and pause machinery bound it.
type recording struct{ AttemptRecorder }

func (r recording) Check(ctx context.Context, st *State) (Result, error) {
	return Result{}, r.RecordAttempt(ctx, st)
}

// recordAttempt lets the recorders among later record a request that a
// check before them answered with a, when a is DEFER_IF_PERMIT, within
// left of the request's budget. Their errors change nothing: the request
// is deferred whatever they record.
func (e *Engine) recordAttempt(ctx context.Context, a Action, later []Step, st *State, left time.Duration) {
	if a.Verb != DeferIfPermit {
		return
	}
	for _, step := range later {
		r, ok := step.Check.(AttemptRecorder)
		if !ok || st.Facts.Skip.Has(step.Check.Name()) || left <= 0 {
			continue
		}
		start := time.Now()
		e.callUnlessPaused(ctx, recording{r}, step.pause, share(step.Timeout, left), st)
		left -= time.Since(start)
	}
}

// FailureCheck is a Check with an answer from memory for a request it
// could not answer: its run failed, timed out or was abandoned, or it is
// paused. The engine calls Failed on the request's goroutine, with the
// request's own state, after recording the error: a decisive result
// decides the request (greylisting defers the other recipients of a
// message it has deferred); otherwise the step's on_error answers, and
// Failed may note that on the message (greylisting counts the recipient
// as accepted, so the message is not split later).
type FailureCheck interface {
	Check
	Failed(st *State) (Result, bool)
}

// stageStep runs the method that decides a check at a stage past RCPT
// (CheckMessage, CheckEndOfMessage) under its step's budget and on_error.
type stageStep struct {
	name   string
	decide func(ctx context.Context, st *State) (Result, error)
}

func (s stageStep) Name() string { return s.name }

func (s stageStep) Check(ctx context.Context, st *State) (Result, error) {
	return s.decide(ctx, st)
}

// quickStageStep is a stageStep whose check answers from memory first
// (EndOfMessageCheck and QuickCheck).
type quickStageStep struct {
	stageStep
	quick func(st *State) (Result, bool)
}

func (s quickStageStep) Quick(st *State) (Result, bool) { return s.quick(st) }

// stageMethod is the method that decides c at state, DATA or
// END-OF-MESSAGE, or nil if c does not decide there.
func stageMethod(state string, c Check) func(context.Context, *State) (Result, error) {
	switch state {
	case "DATA":
		if mc, ok := c.(MessageCheck); ok {
			return mc.CheckMessage
		}
	case "END-OF-MESSAGE":
		if ec, ok := c.(EndOfMessageCheck); ok {
			return ec.CheckEndOfMessage
		}
	}
	return nil
}

// stageSteps are the steps that decide a request at its protocol stage:
// every step at RCPT; at DATA only the message checks (at END-OF-MESSAGE
// the end-of-message checks), since the others are per recipient (and at
// DATA Postfix names no recipient of a multi-recipient message:
// postconf(5), smtpd_data_restrictions).
func stageSteps(state string, steps []Step) []Step {
	if state == "RCPT" {
		return steps
	}
	var out []Step
	for _, s := range steps {
		decide := stageMethod(state, s.Check)
		if decide == nil {
			continue
		}
		step := stageStep{s.Check.Name(), decide}
		if q, ok := s.Check.(QuickCheck); ok && state == "END-OF-MESSAGE" {
			s.Check = quickStageStep{step, q.Quick}
		} else {
			s.Check = step
		}
		if state == "DATA" {
			s.pause = nil // MessageCheck: in memory
		}
		out = append(out, s)
	}
	return out
}

// decide runs the steps in order until one is decisive.
func (e *Engine) decide(ctx context.Context, req *Request, msg *Message, now time.Time, tune *Tuning, ev *evaluation) verdict {
	// RCPT is decided per recipient, DATA per message; answering at other
	// stages would apply per-recipient checks to the whole session.
	p := e.plan.Load()
	steps := p.all[req.ProtocolState]
	if len(steps) == 0 {
		return verdict{res: Pass("not RCPT stage")}
	}
	sasl := tune.SkipSASL && req.SASLUsername != ""
	if sasl {
		if steps = p.sasl[req.ProtocolState]; len(steps) == 0 {
			return verdict{res: Pass("SASL authenticated")}
		}
	}
	st := &ev.st
	*st = State{Req: req, Msg: msg, Now: now}
	if e.opt.ClockOffset != nil {
		st.Now = now.Add(e.opt.ClockOffset())
	}
	v := verdict{timings: ev.timings[:0], at: now}
	if len(steps) > len(ev.timings) {
		v.timings = make([]CheckTiming, 0, len(steps))
	}
	if sasl {
		v.res.Reason = "SASL authenticated" // and the checks that still ran say why
	}
	left := tune.Budget
	for i, step := range steps {
		name := step.Check.Name()
		if st.Facts.Skip.Has(name) {
			continue
		}
		res, used, err := e.run(ctx, step, share(step.Timeout, left), st, &v)
		left -= used
		if err != nil {
			if r, ok := e.failed(step.Check, st); ok {
				return v.end(r, name, st)
			}
			if step.OnError.IsDunno() {
				continue // fail open: the other checks still decide
			}
			e.recordAttempt(ctx, step.OnError, steps[i+1:], st, left)
			return v.end(Result{Action: step.OnError, Reason: name + " failed"}, name, st)
		}
		if !res.Action.IsDunno() || st.Facts.Skip.Has(AllChecks) {
			e.recordAttempt(ctx, res.Action, steps[i+1:], st, left)
			return v.end(res, name, st)
		}
		if res.Reason != "" {
			// Every check that let it pass says why ("spf pass ...; passed
			// after delay"), and the last one is named: it had the final say.
			v.res.Reason, v.check = joinReason(v.res.Reason, res.Reason), name
		}
		if res.Delay > 0 {
			v.res.Delay = res.Delay // a delayed triplet passed: reports count it
		}
	}
	return v.end(Pass(v.res.Reason), v.check, st)
}

// end is the verdict answered by res, charged to check: res's action and
// reason, its delay if it has one (else the last a passing check reported).
func (v verdict) end(res Result, check string, st *State) verdict {
	if res.Delay <= 0 {
		res.Delay = v.res.Delay
	}
	v.res, v.check, v.facts = res, check, st.Facts
	return v
}

// share is the time one step gets: its own timeout, cut to what is left
// of the request budget. Configuration makes the timeouts of the enabled
// checks fit the budget (config.Validate), and a step is charged at most
// its share however late it returns, so with a valid configuration every
// step gets its whole timeout: the same request under the same slow DNS
// gets the same answer, whatever the checks before it took. A step
// without a timeout gets what is left.
func share(timeout, left time.Duration) time.Duration {
	if timeout <= 0 || timeout > left {
		return max(left, 0)
	}
	return timeout
}

// reserve is the part of a share the check does not see in its context:
// a check that honours its deadline returns its own result (a DNS list
// answer with one list missing, an SPF error naming the lookup) before
// the engine stops waiting, instead of racing it. It is generous because
// a busy host may be slow to run the returning goroutine, and it costs
// nothing when checks are fast: a step is charged only the time it took.
func reserve(share time.Duration) time.Duration { return min(share/5, 250*time.Millisecond) }

// errNoBudget is the error of a step the budget left no time for; a
// validated configuration never produces it.
var errNoBudget = errors.New("no time left in request_timeout")

// run calls one check under its share of the budget and returns its
// result and the time it is charged (at most the share); its timing and
// any error go into v. The check gets a copy of the state and a staged
// view of the message; both are kept only if the check returned before
// the engine stopped waiting, so a check that ignores its context can
// neither hold up the reply nor change it, nor what later recipients of
// the message see.
func (e *Engine) run(ctx context.Context, step Step, share time.Duration, st *State, v *verdict) (Result, time.Duration, error) {
	name := step.Check.Name()
	if share <= 0 {
		err := fmt.Errorf("policy: check %s: %w: %w", name, errNoBudget, context.DeadlineExceeded)
		v.errors = append(v.errors, CheckError{Check: name, Err: err, Kind: KindOf(err)})
		return Result{}, 0, err
	}
	start, clock := v.at, time.Time{} // on the wall clock, the previous step's end
	if !e.opt.wallClock {
		start, clock = time.Now(), e.opt.Now()
	}
	o, quick := e.quick(step.Check, st)
	if !quick {
		o = e.callUnlessPaused(ctx, step.Check, step.pause, share, st)
	}
	v.at = time.Now()
	took := v.at.Sub(start)
	used := took // on the engine's clock, which is time.Now unless a test set one
	if !e.opt.wallClock {
		used = e.opt.Now().Sub(clock)
	}
	used = min(used, share)
	v.timings = append(v.timings, CheckTiming{Check: name, Duration: took, Share: share})
	if o.err != nil {
		v.errors = append(v.errors, CheckError{Check: name, Err: o.err, Kind: KindOf(o.err)})
		if o.returned {
			o.st.Msg.commit() // what it recorded before failing, e.g. SPF's memo
		}
		return Result{}, used, o.err
	}
	if !quick { // a quick check wrote to st itself
		o.st.Msg.commit()
		o.st.Msg = st.Msg
		*st = o.st
	}
	return o.res, used, nil
}

// failed asks a FailureCheck for its answer to a request it could not
// answer; a panic in it is no answer.
func (e *Engine) failed(c Check, st *State) (res Result, ok bool) {
	f, is := c.(FailureCheck)
	if !is {
		return Result{}, false
	}
	if err := panics.Call(func() error { res, ok = f.Failed(st); return nil }); err != nil {
		e.logPanic(c.Name(), err)
		return Result{}, false
	}
	return res, ok && !res.Action.IsDunno()
}

// quick asks a QuickCheck to decide from memory, on this goroutine; ok
// is false when c is no QuickCheck or cannot decide so. A panic is the
// check's failure, as on its own goroutine (call), never the daemon's.
func (e *Engine) quick(c Check, st *State) (o attempt, ok bool) {
	q, is := c.(QuickCheck)
	if !is {
		return attempt{}, false
	}
	var res Result
	err := panics.Call(func() error {
		res, ok = q.Quick(st) // it changes st only when it decides
		return nil
	})
	if err != nil {
		return attempt{err: e.panicked(c.Name(), err)}, true
	}
	return attempt{res: res, returned: true}, ok
}

// panicStackEvery is how often a check's panic is logged with its stack:
// a check that panics on every request would otherwise fill the log.
const panicStackEvery = 10 * time.Second

// panicked is the check's failure for a panic in it (err, a
// *panics.Error): the decision line names it, and logPanic its stack.
func (e *Engine) panicked(name string, err error) error {
	e.logPanic(name, err)
	return fmt.Errorf("policy: check %s panicked: %v", name, err.(*panics.Error).Value)
}

// logPanic logs the stack of a panic that failed a check, in the check or
// in what it called (a store's batch, a DNS lookup, which recover it and
// return it as their error): the decision line cannot hold a stack. At
// most once per panicStackEvery, so a panic on every request does not
// fill the log.
func (e *Engine) logPanic(name string, err error) {
	now := time.Now().UnixNano()
	if last := e.lastPanicLog.Load(); now-last >= int64(panicStackEvery) && e.lastPanicLog.CompareAndSwap(last, now) {
		e.opt.Logger.Error("check panicked; it failed, per its on_error", "check", name, "err", err)
	}
}

// attempt is what one check run produced; returned is false for a run
// that panicked or that the engine stopped waiting for.
type attempt struct {
	res      Result
	st       State
	err      error
	returned bool
}

// call runs the check in its own goroutine and waits for it at most share.
func (e *Engine) call(ctx context.Context, c Check, share time.Duration, st *State) attempt {
	name := c.Name()
	stop := time.NewTimer(share)
	defer stop.Stop()
	cctx, cancel := context.WithTimeout(ctx, share-reserve(share))
	defer cancel()
	local := *st
	local.Msg = st.Msg.stage()
	ch := make(chan attempt, 1)
	go func() {
		var r Result
		var err error
		if p := panics.Call(func() error { r, err = c.Check(cctx, &local); return nil }); p != nil {
			ch <- attempt{err: e.panicked(name, p)}
			return
		}
		if pe := (*panics.Error)(nil); errors.As(err, &pe) {
			e.logPanic(name, pe) // recovered below the check, returned as its error
		}
		ch <- attempt{res: r, st: local, err: err, returned: true}
	}()
	select {
	case o := <-ch:
		return o
	case <-stop.C:
		return attempt{err: fmt.Errorf("policy: check %s: no answer within its %s: %w", name, share, context.DeadlineExceeded)}
	case <-ctx.Done():
		return attempt{err: fmt.Errorf("policy: check %s: %w", name, ctx.Err())}
	}
}

// callUnlessPaused is call, for a check with a pause (pz, nil for none)
// only when it is not paused, recording how the run ended (pause.go).
func (e *Engine) callUnlessPaused(ctx context.Context, c Check, pz *pause, share time.Duration, st *State) attempt {
	if pz == nil {
		return e.call(ctx, c, share, st)
	}
	if pz.skip(e.opt.Now) {
		return attempt{err: pausedError(c.Name())}
	}
	o := e.call(ctx, c, share, st)
	pz.done(c.Name(), o.err, e.opt.Now(), e.opt.Logger)
	return o
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// log writes the one Info line per decision. Client-supplied values are
// attributes only, never part of the message.
//
// Two costs are cut from what Logger.LogAttrs would do: the caller's
// program counter it looks up on every call (runtime.Callers), which no
// handler of ours prints; and, when the handler is asynclog's over
// textlog's (serve's, with log.format text), the slog.Record itself:
// asynclog runs the line's writing on its own goroutine, and textlog
// formats the attributes as they are given (HandleFields). Building the
// record and reading it back cost as much as formatting it. The writer
// reads d after Decide returns, which only reads it from then on; its
// action text is worked out here, before anything else reads it.
func (e *Engine) log(d *Decision) {
	ctx := context.Background()
	h := e.opt.Logger.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	d.lineAt = d.Time.Add(d.Duration) // Evaluate read the wall clock as it finished
	if !e.opt.wallClock {
		d.lineAt = time.Now() // a test's clock: the line still carries the real time
	}
	d.ActionText()
	if q, ok := h.(queueHandler); ok {
		q.HandleJob((*decisionLine)(d))
		return
	}
	_ = writeLine(h, d) // a handler's error is its own to count (asynclog)
}

// queueHandler is a handler that runs a job writing a record on the
// goroutine it writes records on (asynclog.Handler).
type queueHandler interface {
	HandleJob(j asynclog.Job)
}

// fieldsHandler is a handler that writes a record from its attributes
// as given, without an slog.Record (textlog.Handler), or says it cannot.
type fieldsHandler interface {
	HandleFields(t time.Time, level slog.Level, msg string, f textlog.Fields) (bool, error)
}

// decisionLine is a Decision as its log line: the asynclog.Job that
// writes it and the textlog.Fields it is written from. A pointer becomes
// an interface value without an allocation, where closures over d would
// cost one each.
type decisionLine Decision

// Write writes the line to h.
func (l *decisionLine) Write(h slog.Handler) error { return writeLine(h, (*Decision)(l)) }

// Fill appends the line's attributes.
func (l *decisionLine) Fill(tl *textlog.Line) { lineAttrs(tl, (*Decision)(l)) }

// writeLine writes d's decision line, at time d.lineAt, to h.
func writeLine(h slog.Handler, d *Decision) error {
	if fh, ok := h.(fieldsHandler); ok {
		if done, err := fh.HandleFields(d.lineAt, slog.LevelInfo, "decision", (*decisionLine)(d)); done {
			return err
		}
	}
	r := slog.NewRecord(d.lineAt, slog.LevelInfo, "decision", 0)
	lineAttrs(recordAttrs{&r}, d)
	return h.Handle(context.Background(), r)
}

// attrWriter takes a line's attributes in order: *textlog.Line, or
// recordAttrs for any other handler.
type attrWriter interface {
	String(key, value string)
	Addr(key string, a netip.Addr)
	Duration(key string, d time.Duration)
}

// lineAttrs is the decision line's attributes, in order.
func lineAttrs(w attrWriter, d *Decision) {
	w.Addr("client", d.Req.ClientAddress)
	w.String("client_name", d.Req.ClientName)
	w.String("helo", d.Req.HeloName)
	w.String("sender", d.Req.Sender)
	w.String("rcpt", d.Req.Recipient)
	w.String("instance", d.Req.Instance)
	w.String("queue_id", d.Req.QueueID)
	w.String("check", d.Check)
	w.String("action", d.ActionText())
	w.String("reason", d.Reason)
	w.Duration("dur", d.Duration)
	if d.Delay > 0 {
		w.Duration("delay", d.Delay)
	}
	if d.Observe {
		w.String("would", d.Would.String())
	}
	for _, ce := range d.Errors {
		w.String("error_"+ce.Check, ce.Err.Error())
		w.String("error_"+ce.Check+"_kind", string(ce.Kind))
	}
}

// recordAttrs adds the attributes to a record.
type recordAttrs struct{ r *slog.Record }

func (a recordAttrs) String(key, value string) { a.r.AddAttrs(slog.String(key, value)) }

func (a recordAttrs) Duration(key string, d time.Duration) { a.r.AddAttrs(slog.Duration(key, d)) }

// Addr adds a's text, or the empty string for the zero Addr, as
// textlog.Line.Addr writes it.
func (a recordAttrs) Addr(key string, addr netip.Addr) {
	text := ""
	if addr.IsValid() {
		text = addr.String()
	}
	a.String(key, text)
}
