// Package agent is the endpoint process: its MQTT session with the broker,
// command dispatch to the restic runner, a local journal of jobs and a
// durable outbox for what the console must receive.
//
// A job's life on the agent, with its journal state in capitals:
//
//	command arrives (intake.go): a duplicate or a tombstoned one is ignored
//	   ▼ journaled RECEIVED
//	   ├─ right after a (re)connection: held in the gathering window, then
//	   │  started oldest first
//	   ▼
//	start (jobs.go): once per job; takes its place in its repository's queue
//	   ▼  in start order (a runner reservation)
//	execute (execute.go): once it holds the repository lock (health and index
//	   │  jobs: at once) ─▶ RUNNING; restic runs, progress published (progress.go)
//	   ▼
//	finish (jobs.go): result into the outbox ─▶ DONE; sent in order (sender.go)
//
//	cancel: a gathered job is started only to end "cancelled"; a started one
//	        has its context cancelled (queued: it gives up its place; running:
//	        restic gets SIGINT); an unknown one leaves a DONE tombstone, so a
//	        command delivered after its cancel never runs.
//	restart (recover, intake.go): RUNNING ─▶ failed, "the agent restarted";
//	        RECEIVED ─▶ started, oldest first; DONE ─▶ nothing.
//
// Files by concern: session.go (the autopaho connection, status and Will,
// subscriptions), intake.go (commands, the gathering window, recovery),
// jobs.go (the job table, start, cancel, finish), execute.go (running one
// job), progress.go, sender.go (delivering the outbox), journal.go and
// outbox.go (their stores), schedules.go (desired schedules and fires),
// health.go and index.go (the two composite job kinds).
package agent
