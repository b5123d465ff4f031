package storage

import (
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// HostCache is for readers that need every host often and exactly (a
// report over the whole fleet): decoding 10,000 host records costs about
// 150 ms of CPU, so a scan reads every host key with its version (the
// commit of its last write, which Badger keeps beside the key) and decodes
// only the records written since the previous scan. A scan sees the store
// as it is, like ListHosts; an unchanged fleet of 10,000 costs a few ms.
type HostCache struct {
	s  *Store
	mu sync.Mutex
	// hosts by ID, each with the version it was decoded at.
	hosts map[string]cachedHost
}

type cachedHost struct {
	version uint64
	host    Host
}

// NewHostCache returns an empty cache over the store's hosts (the first
// scan decodes every record).
func (s *Store) NewHostCache() *HostCache {
	return &HostCache{s: s, hosts: map[string]cachedHost{}}
}

// Hosts returns every host, ordered by ID, as stored now. The records'
// maps and pointers (Labels, LastSuccess, …) are shared with the cache and
// with other callers: read them, never modify them.
func (c *HostCache) Hosts() ([]Host, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Host, 0, len(c.hosts))
	seen := make(map[string]struct{}, len(c.hosts))
	// Records written since the last scan, decoded after it: on all
	// cores when there are many (the first scan of 10,000 hosts).
	type stale struct {
		at      int
		id      string
		version uint64
		raw     []byte
	}
	var todo []stale
	err := c.s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(hostPrefix)
		opts.PrefetchValues = false // most values are not read
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := strings.TrimPrefix(string(item.Key()), hostPrefix)
			seen[id] = struct{}{}
			if ch, ok := c.hosts[id]; ok && ch.version == item.Version() {
				out = append(out, ch.host)
				continue
			}
			raw, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("%s: %w", item.Key(), err)
			}
			todo = append(todo, stale{at: len(out), id: id, version: item.Version(), raw: raw})
			out = append(out, Host{})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: scan hosts: %w", err)
	}
	errs := make([]error, len(todo))
	decodeAll := func(from, step int) {
		for i := from; i < len(todo); i += step {
			errs[i] = decode(todo[i].raw, &out[todo[i].at])
		}
	}
	if workers := min(runtime.GOMAXPROCS(0), len(todo)/256); workers > 1 {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { decodeAll(w, workers) })
		}
		wg.Wait()
	} else {
		decodeAll(0, 1)
	}
	for i, s := range todo {
		if errs[i] != nil {
			return nil, fmt.Errorf("storage: scan hosts: %s%s: %w", hostPrefix, s.id, errs[i])
		}
		c.hosts[s.id] = cachedHost{version: s.version, host: out[s.at]}
	}
	if len(seen) != len(c.hosts) {
		for id := range c.hosts {
			if _, ok := seen[id]; !ok {
				delete(c.hosts, id) // deleted from the store
			}
		}
	}
	return out, nil
}
