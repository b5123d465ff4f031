package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// LogFileName is the agent's log file in its state directory. Under a
// service manager stderr goes to the journal (systemd) or nowhere (the
// Windows SCM), so the file is what an operator can always read on the
// machine itself.
const LogFileName = "agent.log"

// DefaultLogFileMax is the size at which the log file is rotated.
const DefaultLogFileMax = 10 << 20

// LogFile is an append-only log file rotated by size: when a write would
// take it past max bytes, the file becomes NAME.1 (replacing an older one)
// and a new NAME is started, so the logs never take more than about twice
// max. It is safe for concurrent use.
type LogFile struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
}

// OpenLogFile opens (creating, mode 0600) the log file at path for
// appending. max <= 0 means DefaultLogFileMax.
func OpenLogFile(path string, max int64) (*LogFile, error) {
	if max <= 0 {
		max = DefaultLogFileMax
	}
	l := &LogFile{path: path, max: max}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *LogFile) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would not fit. A record larger
// than max is still written whole (into a fresh file).
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		if err := l.rotate(); err != nil && l.f == nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate renames NAME to NAME.1. The file is closed first: Windows cannot
// rename a file that is open.
func (l *LogFile) rotate() error {
	if err := l.f.Close(); err != nil {
		l.f = nil
		return fmt.Errorf("log file: %w", err)
	}
	l.f = nil
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		// Keep logging into the old file rather than losing the line, and
		// try again only after another max bytes (something may hold the
		// file open on Windows for a while).
		if oerr := l.open(); oerr != nil {
			return oerr
		}
		l.size = 0
		return fmt.Errorf("log file: rotate: %w", err)
	}
	return l.open()
}

// Close closes the file. Later writes fail with os.ErrClosed.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// TeeWriter writes every p to all its writers and always reports success.
// Unlike io.MultiWriter it does not stop at the first failing writer: a
// Windows service has no valid stderr, and a full disk must not silence the
// journal, so a failure of one destination never costs the others a line.
type TeeWriter []io.Writer

func (t TeeWriter) Write(p []byte) (int, error) {
	for _, w := range t {
		_, _ = w.Write(p)
	}
	return len(p), nil
}
