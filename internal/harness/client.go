package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/wire"
)

// Client calls the console's JSON API, with a session cookie (after
// Login) or a bearer token.
type Client struct {
	Base  string // scheme://host:port
	HTTP  *http.Client
	Token string // API token sent as a bearer; "" for a session
}

// NewSessionClient is a client with a cookie jar for Login, over transport
// (nil: the default one).
func NewSessionClient(base string, transport http.RoundTripper) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{Base: base, HTTP: &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: transport}}
}

// URL is the address of path on the console.
func (c *Client) URL(path string) string { return c.Base + path }

// APIError is an answer with an unwanted status.
type APIError struct {
	Method, Path string
	Status       int
	Want         int // the status wanted; 0: any 2xx
	Body         string
}

func (e *APIError) Error() string {
	if e.Want != 0 {
		return fmt.Sprintf("%s %s: status %d, want %d: %s", e.Method, e.Path, e.Status, e.Want, strings.TrimSpace(e.Body))
	}
	return fmt.Sprintf("%s %s: status %d: %s", e.Method, e.Path, e.Status, strings.TrimSpace(e.Body))
}

// Do sends body as JSON and decodes a 2xx answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.call(ctx, method, path, body, out, 0)
	return err
}

// Expect is Do for exactly the status want.
func (c *Client) Expect(ctx context.Context, method, path string, body, out any, want int) error {
	_, err := c.call(ctx, method, path, body, out, want)
	return err
}

func (c *Client) call(ctx context.Context, method, path string, body, out any, want int) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if want == 0 && resp.StatusCode/100 != 2 || want != 0 && resp.StatusCode != want {
		return nil, &APIError{Method: method, Path: path, Status: resp.StatusCode, Want: want, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode %s: %w", method, path, b, err)
		}
	}
	return resp.Header, nil
}

// Login opens a session (the client needs a cookie jar).
func (c *Client) Login(ctx context.Context, user, password string) error {
	if err := c.Expect(ctx, "POST", "/api/v1/login", map[string]string{"username": user, "password": password}, nil, 200); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	return nil
}

// NewToken creates an API token for the logged-in user.
func (c *Client) NewToken(ctx context.Context, name string) (string, error) {
	var tok struct {
		Token string `json:"token"`
	}
	if err := c.Do(ctx, "POST", "/api/v1/tokens", map[string]string{"name": name}, &tok); err != nil {
		return "", fmt.Errorf("api token: %w", err)
	}
	if tok.Token == "" {
		return "", errors.New("api token: empty answer")
	}
	return tok.Token, nil
}

// HostCreated is the answer to POST /hosts.
type HostCreated struct {
	ID            string `json:"id"`
	EnrollToken   string `json:"enroll_token"`
	EnrollCommand string `json:"enroll_command"`
}

// CreateHost adds a host and returns its enrolment token.
func (c *Client) CreateHost(ctx context.Context, name string) (HostCreated, error) {
	var h HostCreated
	err := c.Expect(ctx, "POST", "/api/v1/hosts", map[string]string{"name": name}, &h, 201)
	return h, err
}

// EnrollHost creates a host and enrols it as an agent would (POST /enroll
// with a new age key of its own), returning its MQTT credential.
func (c *Client) EnrollHost(ctx context.Context, name string) (HostCreated, wire.EnrollResponse, error) {
	var er wire.EnrollResponse
	h, err := c.CreateHost(ctx, name)
	if err != nil {
		return h, er, err
	}
	_, recipient, err := seal.NewIdentity()
	if err != nil {
		return h, er, err
	}
	if err := c.Expect(ctx, "POST", "/api/v1/enroll", wire.EnrollRequest{
		Token: h.EnrollToken, PublicKey: recipient, Hostname: name, OS: "linux", Arch: "amd64",
	}, &er, 200); err != nil {
		return h, er, err
	}
	if er.HostID != h.ID || er.Username != er.HostID || er.Password == "" {
		return h, er, fmt.Errorf("enrol %s: unexpected answer (host %q, username %q)", h.ID, er.HostID, er.Username)
	}
	return h, er, nil
}

// Host is a host as GET /hosts/{id} shows it (the fields the tests read).
type Host struct {
	ID            string `json:"id"`
	Online        bool   `json:"online"`
	ResticVersion string `json:"restic_version"`
	LastBackup    *struct {
		JobID      string    `json:"job_id"`
		Status     string    `json:"status"`
		EndedAt    time.Time `json:"ended_at"`
		SnapshotID string    `json:"snapshot_id"`
	} `json:"last_backup"`
	Hooks          []string `json:"hooks"`
	Sources        []string `json:"sources"`
	RestoreSources []string `json:"restore_sources"`
	LastDrill      *struct {
		JobID  string `json:"job_id"`
		Status string `json:"status"`
		RanOn  string `json:"ran_on"`
	} `json:"last_drill"`
	ProvenRestorableAt *time.Time `json:"proven_restorable_at"`
}

// Host reads a host.
func (c *Client) Host(ctx context.Context, id string) (Host, error) {
	var h Host
	err := c.Expect(ctx, "GET", "/api/v1/hosts/"+id, nil, &h, 200)
	return h, err
}

// CreateRepo adds a repository (an admin's call) that hosts may use, and
// returns its ID.
func (c *Client) CreateRepo(ctx context.Context, name, url, password string, hosts ...string) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	if hosts == nil {
		hosts = []string{}
	}
	err := c.Expect(ctx, "POST", "/api/v1/repos", map[string]any{"name": name, "url": url, "password": password, "hosts": hosts}, &r, 201)
	return r.ID, err
}

// BindHosts adds hosts to a repository's access list (an admin's call).
func (c *Client) BindHosts(ctx context.Context, repoID string, hosts ...string) error {
	var r struct {
		Hosts []string `json:"hosts"`
	}
	if err := c.Expect(ctx, "GET", "/api/v1/repos/"+repoID, nil, &r, 200); err != nil {
		return err
	}
	return c.Expect(ctx, "PATCH", "/api/v1/repos/"+repoID, map[string]any{"hosts": append(r.Hosts, hosts...)}, nil, 200)
}

// Job is a job as the API shows it.
type Job struct {
	ID          string          `json:"id"`
	HostID      string          `json:"host_id"`
	RepoID      string          `json:"repo_id"`
	Kind        string          `json:"kind"`
	Status      string          `json:"status"`
	ActorKind   string          `json:"actor_kind"`
	Actor       string          `json:"actor"`
	ScheduleID  string          `json:"schedule_id"`
	ScheduledAt time.Time       `json:"scheduled_at"`
	CreatedAt   time.Time       `json:"created_at"`
	StartedAt   time.Time       `json:"started_at"`
	EndedAt     time.Time       `json:"ended_at"`
	ExitCode    *int            `json:"exit_code"`
	Error       string          `json:"error"`
	StderrTail  string          `json:"stderr_tail"`
	SnapshotID  string          `json:"snapshot_id"`
	Summary     json.RawMessage `json:"summary"`
	Held        bool            `json:"held"`
	Output      json.RawMessage `json:"output"`
	Hooks       []wire.HookRun  `json:"hooks"`
	Progress    *struct {
		Seq int64 `json:"seq"`
	} `json:"progress"`
}

// Seq is the sequence number of the job's last progress (0: none yet).
func (j Job) Seq() int64 {
	if j.Progress == nil {
		return 0
	}
	return j.Progress.Seq
}

// Terminal says whether a job status is final.
func Terminal(status string) bool {
	switch status {
	case "succeeded", "partial", "failed", "cancelled", "expired":
		return true
	}
	return false
}

// CreateJob creates a job on a host (body: kind, repo_id, args) and
// returns its ID.
func (c *Client) CreateJob(ctx context.Context, hostID string, body map[string]any) (string, error) {
	var r struct {
		JobID string `json:"job_id"`
	}
	err := c.Expect(ctx, "POST", "/api/v1/hosts/"+hostID+"/jobs", body, &r, 201)
	return r.JobID, err
}

// Job reads a job.
func (c *Client) Job(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.Expect(ctx, "GET", "/api/v1/jobs/"+id, nil, &j, 200)
	return j, err
}

// Jobs lists every job of the console, limit a page.
func (c *Client) Jobs(ctx context.Context, limit int) ([]Job, error) {
	var all []Job
	cursor := ""
	for {
		path := "/api/v1/jobs?limit=" + strconv.Itoa(limit)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page []Job
		hdr, err := c.call(ctx, "GET", path, nil, &page, 200)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		all = append(all, page...)
		cursor = hdr.Get("X-Next-Cursor")
		if cursor == "" || len(page) == 0 {
			return all, nil
		}
	}
}
