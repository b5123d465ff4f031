package agent

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// indexChunkBytes keeps each chunk well under the payload limit.
const indexChunkBytes = 512 << 10

// runIndex streams a snapshot's whole tree to the console in chunks, through
// the outbox (in order, before the result, surviving disconnects). Memory
// stays bounded by a few chunks whatever the snapshot's size.
//
// Chunks are encoded and queued (a synced file each) on a goroutine of their
// own, one chunk behind the one being filled: restic's output is read
// meanwhile instead of waiting in its pipe for every sync.
func (a *Agent) runIndex(ctx context.Context, jobID string, spec runner.Spec, pump *progressPump) runner.Result {
	start := time.Now()
	pump.started(start)
	snapID := spec.Ls.SnapshotID

	full := make(chan []wire.IndexNode, 1)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		sendErr error
		seq     int64
	)
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return sendErr
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		queued := 0
		for chunk := range full {
			if failed() != nil {
				continue // drain
			}
			seq++
			b, err := wire.Encode(&wire.IndexChunk{JobID: jobID, SnapshotID: snapID, Seq: seq, Nodes: chunk})
			if err == nil {
				err = a.out.Put(wire.OutputTopic(a.cfg.HostID, jobID), b, false)
			}
			if err != nil {
				mu.Lock()
				sendErr = err
				mu.Unlock()
				continue
			}
			queued += len(chunk)
			pump.send(wire.Progress{FilesDone: uint64(queued)})
		}
	}()

	var chunk []wire.IndexNode
	size, total := 0, 0
	flush := func() error {
		if len(chunk) > 0 {
			full <- chunk
			chunk, size = nil, 0
		}
		return failed()
	}
	err := a.runner.LsStream(ctx, spec.Repo, snapID, func(n runner.Node) error {
		if chunk == nil {
			chunk = make([]wire.IndexNode, 0, wire.MaxIndexChunk)
		}
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
	close(full)
	wg.Wait()
	if err == nil {
		err = failed()
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
