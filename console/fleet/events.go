package fleet

import (
	"sync"

	"github.com/restic-manager/restic-manager/storage"
)

// hub fans job updates out to listeners (SSE streams). A slow listener
// misses intermediate updates, never the process: sends never block.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan storage.Job]struct{}
}

func newHub() *hub { return &hub{subs: map[string]map[chan storage.Job]struct{}{}} }

// subscribe returns a channel of updates for one job and a cancel func.
func (h *hub) subscribe(jobID string) (<-chan storage.Job, func()) {
	ch := make(chan storage.Job, 8)
	h.mu.Lock()
	if h.subs[jobID] == nil {
		h.subs[jobID] = map[chan storage.Job]struct{}{}
	}
	h.subs[jobID][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[jobID], ch)
		if len(h.subs[jobID]) == 0 {
			delete(h.subs, jobID)
		}
		h.mu.Unlock()
	}
}

func (h *hub) publish(j storage.Job) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[j.ID] {
		select {
		case ch <- j:
		default:
			// Drop the oldest so the newest state always gets through.
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- j:
			default:
			}
		}
	}
}
