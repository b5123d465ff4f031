// Package fleet is the console's model of the fleet. It owns every job from
// its creation to its end, ingests everything agents send (before the
// broker acknowledges it; index output goes to console/repos), pushes
// schedules, enrols hosts, decides which hosts may receive a repository and
// defines a host's state. It speaks no HTTP: the API and the pages call it;
// repos, alerts and metrics observe it.
//
// # The job lifecycle
//
// A job is created by a person (CreateJob), by a schedule's fire (ingest of
// hosts/{h}/fires) or by the console itself (health, index). Every change of
// its status is in lifecycle.go or ingest.go, and every end goes through
// one function, ended, which sends the stored end to SSE watchers and then
// runs the observers registered with OnJobEnd, in order, in the background:
// the gate (frees the repository, releases the next job), then — registered
// by the console — repository health (console/repos: last check/prune,
// health refresh, snapshot index), metrics, and alerts (job_failed, the
// host's MQTT health).
//
//	               newJob: validate (wire.NormalizeArgs), route destructive
//	               work to the maintenance host, store, gate.admit
//	                                │
//	           ┌────────────────────┴────────────────────┐
//	           ▼ repository free                         ▼ repository busy
//	  queued ──dispatch──▶ agent              queued, held (gate.hold)
//	           │                                         │ a job of the repository
//	           │                                         │ ends, or every 15 s:
//	           │                                         ▼ gate.release → dispatch
//	           │◀────────────────────────────────────────┘
//	           │ first progress (ingestProgress)
//	           ▼
//	        running ──result (ingestResult)──▶ succeeded │ partial │ failed │ cancelled
//	           │                                         │
//	queued ──CancelJob──▶ cancelled (no exit code)       │
//	queued ──expiry (sweepLoop, redispatch)──▶ expired   │
//	running ──lost (not in the agent's running_jobs)──▶ failed
//	running ──held (a forget's guard stopped it)──▶ held ──ApproveJob──▶ queued
//	                                                 └──CancelJob──▶ cancelled
//	           │                                         ▼
//	           └──────────────────────────────────▶ ended(j): events, then observers
//
// A result that arrives after a console-side end (EndedByConsole: cancelled
// while queued or while its host was offline, expired, lost, its host
// removed) replaces it: what the agent reports really happened. A held
// forget is not ended: its repository is free (OnJobHeld), and it waits. Every
// receiver is idempotent: a repeated progress (seq not newer), a repeated
// result, or a repeated fire (one job per schedule and scheduled time)
// changes nothing and ends nothing twice.
//
// # Files
//
// fleet.go (the type, its options and background work), lifecycle.go
// (create, dispatch, cancel, expire, end), gate.go (exclusive work alone on
// its repository), ingest.go (status, progress, results), schedules.go
// (desired and reported schedules, fires), online.go (what a host gets
// when it comes online), sweep.go (expiry), lost.go (jobs an agent lost),
// bindings.go (which hosts may receive a repository), hoststate.go (a
// host's state: Assess), hosts.go (enrolment, credentials), accounts.go (an
// external broker's logins), events.go (job updates for SSE), retention.go.
package fleet
