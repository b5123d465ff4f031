package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// indexChunkBytes keeps each chunk well under the payload limit.
const indexChunkBytes = 512 << 10

// runIndex streams a snapshot's whole tree to the console in chunks, through
// the outbox (in order, before the result, surviving disconnects). Memory
// stays bounded by one chunk whatever the snapshot's size.
func (a *Agent) runIndex(ctx context.Context, jobID string, spec runner.Spec, pump *progressPump) runner.Result {
	start := time.Now()
	pump.started(start)
	snapID := spec.Ls.SnapshotID
	var chunk []wire.IndexNode
	size, seq, total := 0, int64(0), 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		seq++
		b, err := wire.Encode(&wire.IndexChunk{JobID: jobID, SnapshotID: snapID, Seq: seq, Nodes: chunk})
		if err != nil {
			return err
		}
		if err := a.out.Put(wire.OutputTopic(a.cfg.HostID, jobID), b, false); err != nil {
			return err
		}
		chunk, size = chunk[:0], 0
		pump.send(wire.Progress{FilesDone: uint64(total)})
		return nil
	}
	err := a.runner.LsStream(ctx, spec.Repo, snapID, func(n runner.Node) error {
		chunk = append(chunk, wire.IndexNode{Path: n.Path, Name: n.Name, Type: n.Type, Size: n.Size, Mtime: n.Mtime.UTC(), Mode: uint32(n.Mode)})
		size += len(n.Path) + len(n.Name) + 96
		total++
		if len(chunk) >= wire.MaxIndexChunk || size >= indexChunkBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	res := runner.Result{Status: runner.StatusSucceeded, StartedAt: start, EndedAt: time.Now()}
	if err != nil {
		res.Status, res.ExitCode, res.Error = runner.StatusFailed, -1, err.Error()
		if ctx.Err() != nil {
			res.Status = runner.StatusCancelled
		}
		return res
	}
	res.Output, _ = json.Marshal(map[string]any{"snapshot_id": snapID, "nodes": total, "chunks": seq})
	return res
}
