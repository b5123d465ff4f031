// Package agent is the endpoint process: its MQTT session with the broker,
// command dispatch to the restic runner, a local journal of jobs and a
// durable outbox for what the console must receive.
//
// A job's life on the agent, with its journal state in capitals:
//
//	command arrives (intake.go) ─▶ RECEIVED ─▶ right after a (re)connection:
//	   │  duplicate or tombstoned: ignored        held in the gathering window,
//	   ▼                                          then started oldest first
//	start (jobs.go): once per job; takes its place in the repository's queue
//	   ▼  in start order (runner reservation)
//	execute (execute.go): holds the repository lock ─▶ RUNNING ─▶ restic runs,
//	   │  progress published as it comes (progress.go)
//	   ▼
//	finish (jobs.go): result into the outbox ─▶ DONE ─▶ sent in order (sender.go)
//
//	cancel: a gathered job is started only to end "cancelled"; a started one
//	        has its context cancelled (queued: it gives up its place; running:
//	        restic gets SIGINT); an unknown one leaves a DONE tombstone, so a
//	        command delivered after its cancel never runs.
//	restart (recover, intake.go): RUNNING ─▶ failed, "the agent restarted";
//	        RECEIVED ─▶ started, oldest first; DONE ─▶ nothing.
//
// The session (session.go) owns the autopaho connection: status and Will,
// subscriptions, and the callbacks that feed intake.
package agent
