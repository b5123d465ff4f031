package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/internal/tlsutil"
	"github.com/restic-manager/restic-manager/storage"
)

const backupStoreUsage = `Usage:
  restic-manager backup-store FILE [--server URL] [--token TOKEN] [--ca-fingerprint FP] [--data DIR] [--force]
  restic-manager restore-store FILE --data DIR --master-key FILE [--tls DIR]

backup-store writes a consistent backup of the console's store (Badger's
backup format) to FILE, mode 0600. While the server runs, the backup is taken
online through its API (POST /api/v1/admin/backup, an admin's API token in
--token or RM_TOKEN). With --data and the server stopped, the store is read
directly; with --data and the server running, the API is used and the CA in
DIR/tls/ca.pem is trusted.

restore-store loads such a backup into a new, EMPTY data directory, for a
stopped server. The backup does not hold the master key, which encrypts the
repository secrets: pass the old DATA/store/master.key as --master-key. Pass
the old DATA/tls as --tls to keep the CA that enrolled agents pin.
`

// parseWithFile parses flags that may come before or after one positional
// FILE argument (Go's flag package stops at the first non-flag).
func parseWithFile(fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("%s: want exactly one FILE argument, got %d\n\n%s", fs.Name(), len(pos), backupStoreUsage)
	}
	return pos[0], nil
}

// storeDir is where the server keeps its store inside its data directory
// (see runServer): DATA/store, holding master.key and the db directory.
func storeDir(data string) string { return filepath.Join(data, "store") }

func runBackupStore(args []string) error {
	fs := flag.NewFlagSet("backup-store", flag.ContinueOnError)
	server := fs.String("server", "https://127.0.0.1:8080", "the running console's URL (http:// for a server started with --insecure)")
	token := fs.String("token", "", "an admin's API token (default: $RM_TOKEN)")
	caFP := fs.String("ca-fingerprint", "", "SHA-256 fingerprint of the console's CA (default: from DATA/tls/ca.pem with --data)")
	data := fs.String("data", "", "the server's data directory: read the store directly when the server is stopped")
	force := fs.Bool("force", false, "replace FILE if it exists")
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("RM_TOKEN")
	}
	if !*force {
		if _, err := os.Lstat(file); err == nil {
			return fmt.Errorf("backup-store: %s exists (use --force to replace it)", file)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	write := func(w io.Writer) error { return onlineBackup(ctx, *server, *token, *caFP, *data, w) }
	how := "through the API of " + *server
	if *data != "" {
		st, err := openExistingStore(*data)
		switch {
		case err == nil:
			defer st.Close()
			write, how = st.Backup, "directly from "+storeDir(*data)+" (the server is stopped)"
		case errors.Is(err, errStoreInUse):
			// The running server holds Badger's directory lock: ask it.
		default:
			return fmt.Errorf("backup-store: %w", err)
		}
	}
	n, err := writeBackupFile(file, write)
	if err != nil {
		return fmt.Errorf("backup-store: %w", err)
	}
	fmt.Printf("backed up %d records %s to %s\n", n, how, file)
	fmt.Println("The backup does not hold the master key: keep a copy of DATA/store/master.key (and DATA/tls) apart from it.")
	return nil
}

var errStoreInUse = errors.New("the store is in use")

// openExistingStore opens the store in data, refusing to create one: a
// mistyped directory must not yield the backup of a new, empty store.
func openExistingStore(data string) (*storage.Store, error) {
	dir := storeDir(data)
	if _, err := os.Stat(filepath.Join(dir, "db", "MANIFEST")); err != nil {
		return nil, fmt.Errorf("no store in %s: %w", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "master.key")); err != nil {
		return nil, fmt.Errorf("no master key in %s: %w", dir, err)
	}
	st, err := storage.Open(dir)
	if storage.IsLocked(err) {
		// The running server holds Badger's directory lock.
		return nil, fmt.Errorf("%w: %v", errStoreInUse, err)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// onlineBackup streams POST /api/v1/admin/backup of a running server to w.
func onlineBackup(ctx context.Context, server, token, caFP, data string, w io.Writer) error {
	if token == "" {
		return errors.New("an admin API token is needed to back up a running server (--token or RM_TOKEN; POST /api/v1/tokens makes one)")
	}
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("--server %q: want http(s)://HOST:PORT", server)
	}
	if caFP == "" && data != "" && u.Scheme == "https" {
		// The generated CA of this very server; a public certificate
		// (--tls-cert) leaves no ca.pem and the system roots apply.
		if fp, err := caFingerprintFile(filepath.Join(data, "tls", "ca.pem")); err == nil {
			caFP = fp
		}
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:       tlsutil.ClientConfig(caFP, u.Hostname()),
		ResponseHeaderTimeout: time.Minute,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String()+"/api/v1/admin/backup", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("%s answered %s: %s", server, resp.Status, e.Error)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		return fmt.Errorf("%s answered with %q, not a backup (is this a restic-manager console?)", server, ct)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// caFingerprintFile is the fingerprint of the first certificate in a PEM
// file.
func caFingerprintFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	der, err := firstPEMCert(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return tlsutil.Fingerprint(der), nil
}

func firstPEMCert(b []byte) ([]byte, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM certificate")
		}
		if blk.Type == "CERTIFICATE" {
			return blk.Bytes, nil
		}
	}
}

// writeBackupFile writes a backup to a temporary file beside path (mode
// 0600: it holds password hashes and sealed secrets), checks that it is a
// whole backup of a restic-manager store, and only then renames it to path.
// It returns the number of records.
func writeBackupFile(path string, write func(io.Writer) error) (int, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		f.Close()
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	n, err := checkBackupFile(tmp)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	return n, nil
}

// checkBackupFile checks a backup file (storage.CheckBackup) and returns
// its number of records.
func checkBackupFile(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return storage.CheckBackup(f)
}

func runRestoreStore(args []string) error {
	fs := flag.NewFlagSet("restore-store", flag.ContinueOnError)
	data := fs.String("data", "", "the new data directory: must not exist or be empty")
	keyFile := fs.String("master-key", "", "the master.key of the store the backup was taken from (DATA/store/master.key)")
	tlsDir := fs.String("tls", "", "the old DATA/tls directory, to keep the CA that enrolled agents pin (optional)")
	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if *data == "" || *keyFile == "" {
		return fmt.Errorf("restore-store: --data and --master-key are required\n\n%s", backupStoreUsage)
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("restore-store: master key: %w", err)
	}
	if len(key) != 32 {
		return fmt.Errorf("restore-store: %s is %d bytes; a master key is 32", *keyFile, len(key))
	}
	if _, err := checkBackupFile(file); err != nil {
		return fmt.Errorf("restore-store: %s: %w", file, err)
	}
	created, err := prepareEmptyDir(*data)
	if err != nil {
		return fmt.Errorf("restore-store: %w", err)
	}
	n, err := restoreInto(*data, file, key, *tlsDir)
	if err != nil {
		// Leave the directory as empty as it was, so a retry can run.
		_ = os.RemoveAll(storeDir(*data))
		_ = os.RemoveAll(filepath.Join(*data, "tls"))
		if created {
			_ = os.Remove(*data)
		}
		return fmt.Errorf("restore-store: %w", err)
	}
	fmt.Printf("restored %d records from %s into %s\n", n, file, *data)
	if *tlsDir == "" {
		fmt.Println("No --tls given: the server will generate a new CA, and agents enrolled with the old one must be enrolled again.")
	}
	fmt.Printf("Start the server with --data %s.\n", *data)
	return nil
}

// prepareEmptyDir makes sure dir exists (0700) and holds nothing, and says
// whether it was created.
func prepareEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, err
	case len(entries) > 0:
		return false, fmt.Errorf("%s is not empty: restore into a new directory", dir)
	}
	return false, nil
}

func restoreInto(data, file string, key []byte, tlsDir string) (int, error) {
	dir := storeDir(data)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	// The key first: Open would otherwise make a new one.
	if err := os.WriteFile(filepath.Join(dir, "master.key"), key, 0o600); err != nil {
		return 0, err
	}
	if tlsDir != "" {
		if err := copyDir(tlsDir, filepath.Join(data, "tls")); err != nil {
			return 0, fmt.Errorf("tls: %w", err)
		}
	}
	st, err := storage.Open(dir)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(file)
	if err != nil {
		st.Close()
		return 0, err
	}
	defer f.Close()
	if err := st.Load(f); err != nil {
		st.Close()
		return 0, err
	}
	if err := st.Close(); err != nil {
		return 0, err
	}
	return checkBackupFile(file)
}

// copyDir copies the regular files of src (not recursively) into a new dst
// with their modes: the CA's and server's certificates and private keys.
func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
