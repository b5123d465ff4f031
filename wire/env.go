package wire

import (
	"sort"
	"strings"
)

// backendEnv are the environment variables a repository may set for
// restic: its backends' credentials and settings, nothing that names a
// command or changes how a process runs (RESTIC_PASSWORD_COMMAND, rclone's
// configuration with its ssh command, LD_PRELOAD, PATH: a repository
// editor would otherwise run code as the agent's user, root).
var backendEnv = map[string]bool{
	// S3 and compatible
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	"AWS_DEFAULT_REGION": true, "AWS_REGION": true, "AWS_PROFILE": true, "AWS_SHARED_CREDENTIALS_FILE": true,
	"RESTIC_AWS_ASSUME_ROLE_ARN": true, "RESTIC_AWS_ASSUME_ROLE_SESSION_NAME": true, "RESTIC_AWS_ASSUME_ROLE_EXTERNAL_ID": true,
	"RESTIC_AWS_ASSUME_ROLE_POLICY": true, "RESTIC_AWS_ASSUME_ROLE_REGION": true, "RESTIC_AWS_ASSUME_ROLE_STS_ENDPOINT": true,
	// Backblaze B2
	"B2_ACCOUNT_ID": true, "B2_ACCOUNT_KEY": true,
	// Azure
	"AZURE_ACCOUNT_NAME": true, "AZURE_ACCOUNT_KEY": true, "AZURE_ACCOUNT_SAS": true, "AZURE_ENDPOINT_SUFFIX": true,
	"AZURE_FORCE_CLI_CREDENTIAL": true,
	// Google Cloud Storage
	"GOOGLE_PROJECT_ID": true, "GOOGLE_APPLICATION_CREDENTIALS": true, "GOOGLE_ACCESS_TOKEN": true,
	// OpenStack Swift (its OS_* variables, below) and v1 auth
	"ST_AUTH": true, "ST_USER": true, "ST_KEY": true,
	// SFTP: restic-manager's own, not restic's. The agent writes them to
	// private files for the run and gives ssh their names (the key never
	// reaches argv or restic's environment): runner.EnvSFTPKey.
	"RESTIC_SFTP_KEY": true, "RESTIC_SFTP_KNOWN_HOSTS": true,
	// rest-server
	"RESTIC_REST_USERNAME": true, "RESTIC_REST_PASSWORD": true,
	// TLS to the backend and repository settings
	"RESTIC_CACERT": true, "RESTIC_TLS_CLIENT_CERT": true, "RESTIC_COMPRESSION": true, "RESTIC_PACK_SIZE": true,
	"RESTIC_READ_CONCURRENCY": true,
}

// swiftEnv lists the OpenStack variables restic's swift backend reads.
var swiftEnv = []string{"AUTH_URL", "REGION_NAME", "USERNAME", "USER_ID", "PASSWORD", "TENANT_ID", "TENANT_NAME",
	"USER_DOMAIN_NAME", "USER_DOMAIN_ID", "PROJECT_NAME", "PROJECT_DOMAIN_NAME", "PROJECT_DOMAIN_ID", "TRUST_ID",
	"APPLICATION_CREDENTIAL_ID", "APPLICATION_CREDENTIAL_NAME", "APPLICATION_CREDENTIAL_SECRET", "STORAGE_URL", "AUTH_TOKEN"}

func init() {
	for _, n := range swiftEnv {
		backendEnv["OS_"+n] = true
	}
}

// CheckRepoEnv refuses a repository environment with a variable that is
// not a restic backend's, or a value that cannot be passed to a process.
// The console checks it when a repository is saved, and the agent again
// before restic runs.
func CheckRepoEnv(env map[string]string) error {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !backendEnv[k] {
			return badArgs("env %q is not a restic backend variable (allowed: AWS_*, B2_*, AZURE_*, GOOGLE_*, OS_*, ST_*, RESTIC_REST_*, RESTIC_SFTP_KEY, RESTIC_SFTP_KNOWN_HOSTS, RESTIC_CACERT, …)", k)
		}
		if strings.ContainsAny(env[k], "\x00") {
			return badArgs("env %q contains a NUL byte", k)
		}
	}
	return nil
}
