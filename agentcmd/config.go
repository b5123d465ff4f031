package agentcmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// Defaults of a definition's timeout.
const (
	DefaultHookTimeout   = 5 * time.Minute
	DefaultSourceTimeout = 24 * time.Hour
)

// Hook is a named hook of the agent's configuration: commands run before
// a backup, after it whatever its outcome, and when it failed.
type Hook struct {
	Before    []string          `yaml:"before,omitempty"`
	After     []string          `yaml:"after,omitempty"`
	OnFailure []string          `yaml:"on_failure,omitempty"`
	Timeout   Duration          `yaml:"timeout,omitempty"`
	Env       map[string]string `yaml:"env,omitempty"`
	Dir       string            `yaml:"dir,omitempty"`
	User      string            `yaml:"user,omitempty"`
}

// Source is a named source: Command's standard output is backed up as one
// file, Filename; Restore, when set, takes such a dump on its standard
// input.
type Source struct {
	Command  []string          `yaml:"command"`
	Filename string            `yaml:"filename,omitempty"`
	Timeout  Duration          `yaml:"timeout,omitempty"`
	Env      map[string]string `yaml:"env,omitempty"`
	Dir      string            `yaml:"dir,omitempty"`
	User     string            `yaml:"user,omitempty"`
	Restore  []string          `yaml:"restore,omitempty"`
}

// Duration is a time.Duration written as "10m" in YAML.
type Duration time.Duration

// UnmarshalText reads a Go duration ("90s", "2h").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("timeout %q: %w", b, err)
	}
	if v <= 0 {
		return fmt.Errorf("timeout %q must be positive", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration back as Go writes it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Spec is one command to run: the argv of a hook phase, a source's dump or
// its restore, with the definition's settings.
type Spec struct {
	Name    string // the hook or source's name, for errors and logs
	Argv    []string
	Env     map[string]string
	Dir     string
	User    string
	Timeout time.Duration
}

// Phase returns the spec of one of the hook's phases (nil argv when the
// hook has none for it).
func (h Hook) Phase(name, phase string) Spec {
	var argv []string
	switch phase {
	case wire.HookBefore:
		argv = h.Before
	case wire.HookAfter:
		argv = h.After
	case wire.HookOnFailure:
		argv = h.OnFailure
	}
	return Spec{Name: name, Argv: argv, Env: h.Env, Dir: h.Dir, User: h.User, Timeout: timeoutOr(h.Timeout, DefaultHookTimeout)}
}

// Dump is the spec of the source's dump command.
func (s Source) Dump(name string) Spec {
	return Spec{Name: name, Argv: s.Command, Env: s.Env, Dir: s.Dir, User: s.User, Timeout: timeoutOr(s.Timeout, DefaultSourceTimeout)}
}

// RestoreSpec is the spec of the source's restore command.
func (s Source) RestoreSpec(name string) Spec {
	return Spec{Name: name, Argv: s.Restore, Env: s.Env, Dir: s.Dir, User: s.User, Timeout: timeoutOr(s.Timeout, DefaultSourceTimeout)}
}

// File is the file name of the source's dump inside its snapshot.
func (s Source) File(name string) string {
	if s.Filename != "" {
		return s.Filename
	}
	return name
}

func timeoutOr(d Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

// Set is an agent's hooks and sources, validated.
type Set struct {
	Hooks   map[string]Hook
	Sources map[string]Source
}

// NewSet validates the definitions (at agent start and on each reload): a
// bad one is an error naming it, so that the agent refuses to start with
// it rather than fail the first backup that names it.
func NewSet(hooks map[string]Hook, sources map[string]Source) (*Set, error) {
	var errs []error
	for _, name := range sortedKeys(hooks) {
		h := hooks[name]
		if err := checkName("hook", name); err != nil {
			errs = append(errs, err)
			continue
		}
		if len(h.Before)+len(h.After)+len(h.OnFailure) == 0 {
			errs = append(errs, fmt.Errorf("hook %q: needs at least one of before, after, on_failure", name))
		}
		for _, p := range []string{wire.HookBefore, wire.HookAfter, wire.HookOnFailure} {
			if s := h.Phase(name, p); len(s.Argv) > 0 {
				if err := s.check(); err != nil {
					errs = append(errs, fmt.Errorf("hook %q %s: %w", name, p, err))
				}
			}
		}
	}
	for _, name := range sortedKeys(sources) {
		s := sources[name]
		if err := checkName("source", name); err != nil {
			errs = append(errs, err)
			continue
		}
		if len(s.Command) == 0 {
			errs = append(errs, fmt.Errorf("source %q: command is required", name))
		} else if err := s.Dump(name).check(); err != nil {
			errs = append(errs, fmt.Errorf("source %q command: %w", name, err))
		}
		if err := checkFilename(s.File(name)); err != nil {
			errs = append(errs, fmt.Errorf("source %q: %w", name, err))
		}
		if len(s.Restore) > 0 {
			if err := s.RestoreSpec(name).check(); err != nil {
				errs = append(errs, fmt.Errorf("source %q restore: %w", name, err))
			}
		}
	}
	if len(hooks) > wire.MaxHookNames || len(sources) > wire.MaxHookNames {
		errs = append(errs, fmt.Errorf("at most %d hooks and %d sources", wire.MaxHookNames, wire.MaxHookNames))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	return &Set{Hooks: hooks, Sources: sources}, nil
}

// HookNames, SourceNames and RestoreNames are what the agent reports in
// its status: names only, sorted.
func (s *Set) HookNames() []string {
	if s == nil {
		return nil
	}
	return sortedKeys(s.Hooks)
}

func (s *Set) SourceNames() []string {
	if s == nil {
		return nil
	}
	return sortedKeys(s.Sources)
}

func (s *Set) RestoreNames() []string {
	if s == nil {
		return nil
	}
	var n []string
	for _, k := range sortedKeys(s.Sources) {
		if len(s.Sources[k].Restore) > 0 {
			n = append(n, k)
		}
	}
	return n
}

// Hook returns the named hook, or an error saying the agent lacks it.
func (s *Set) Hook(name string) (Hook, error) {
	if s != nil {
		if h, ok := s.Hooks[name]; ok {
			return h, nil
		}
	}
	return Hook{}, fmt.Errorf("hook %q is not defined in this agent's configuration (it has: %s)", name, list(s.HookNames()))
}

// Source returns the named source, or an error saying the agent lacks it.
func (s *Set) Source(name string) (Source, error) {
	if s != nil {
		if src, ok := s.Sources[name]; ok {
			return src, nil
		}
	}
	return Source{}, fmt.Errorf("source %q is not defined in this agent's configuration (it has: %s)", name, list(s.SourceNames()))
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func checkName(what, name string) error {
	if !wire.ValidCommandName(name) {
		return fmt.Errorf("%s name %q: use 1-64 characters of a-z, 0-9, '_', '.', '-'", what, name)
	}
	return nil
}

// check validates a spec where it will run: the program exists, the
// directory exists, the user exists and the agent may become it.
func (s Spec) check() error {
	if s.Argv[0] == "" {
		return errors.New("empty program name")
	}
	if _, err := exec.LookPath(s.Argv[0]); err != nil {
		return fmt.Errorf("program %q: %w", s.Argv[0], err)
	}
	if strings.ContainsRune(strings.Join(s.Argv, ""), 0) {
		return errors.New("an argument contains a NUL byte")
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env: bad variable name %q", k)
		}
	}
	if s.Dir != "" {
		if !filepath.IsAbs(s.Dir) {
			return fmt.Errorf("dir %q must be an absolute path", s.Dir)
		}
		if fi, err := os.Stat(s.Dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("dir %q is not a directory", s.Dir)
		}
	}
	if s.User != "" {
		if _, err := credentialOf(s.User); err != nil {
			return err
		}
	}
	return nil
}

// checkFilename refuses a dump file name restic could not store as one
// file at the snapshot's root.
func checkFilename(f string) error {
	if f == "" || f == "." || f == ".." || strings.ContainsAny(f, "/\\\x00\n") || strings.HasPrefix(f, "-") || len(f) > 255 {
		return fmt.Errorf("filename %q must be one file name (no slashes, not starting with '-')", f)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
