// Package agentcmd holds the commands an agent's own configuration
// defines — hooks run around a backup and sources whose output is backed
// up — and runs them. The console only ever names them (ARCHITECTURE.md,
// "Hooks and sources: the console names, the agent defines"): nothing here
// takes a command from the network.
//
// A command is an argv list, never a shell string, run in its own process
// group (Windows: its own process group, killed with its tree) with a
// minimal environment plus the definition's, optionally as another user
// (Linux, when the agent runs as root). Cancel or a timeout kills the whole
// group, so a dump that forks (sh -c, pg_dumpall) leaves nothing behind.
package agentcmd
