// Package install holds the agent install scripts that the console serves
// at /install.sh (Linux, POSIX sh) and /install.ps1 (Windows PowerShell),
// and the one-line installers that fetch and run them. Both scripts
// download the agent from the console's /downloads/ route
// (restic-manager-agent-OS-ARCH), enrol it with a one-time token or a
// reusable enrolment key and install its service; see the comments at the
// top of each script.
//
// Trust: a console with its generated (private) CA is pinned from the
// first byte. The Linux line hands curl that CA (written out in the line)
// as its CA file; the Windows line's certificate callback accepts only
// a chain that verifies up to a root with the CA's SHA-256 fingerprint. The
// pin is on the CA, not on the server's key: the console reissues its
// certificate with a new key (new names, or 30 days before it expires) from
// the same CA, kept for 20 years in DATA/tls, so a line stays good for the
// life of its token whatever the console did meanwhile. The console serves
// install.sh with the CA written into it (Script), so the script trusts it
// for its own downloads without fetching anything unverified.
package install

import (
	"bytes"
	"crypto/x509"
	"embed"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/restic-manager/restic-manager/internal/tlsutil"
)

// Scripts holds install.sh and install.ps1.
//
//go:embed install.sh install.ps1
var Scripts embed.FS

// caLine is the line of install.sh that Script fills with the console's CA.
const caLine = "CONSOLE_CA=''\n"

// Script returns a script as the console serves it: install.sh with caPEM
// (the console's generated CA; nil for none) written into it, install.ps1
// as it is. The script uses that CA only to check it against the
// fingerprint it is given and then to trust it alone for its downloads.
func Script(name string, caPEM []byte) ([]byte, error) {
	b, err := fs.ReadFile(Scripts, name)
	if err != nil || name != "install.sh" || len(caPEM) == 0 {
		return b, err
	}
	ca, err := parseCA(caPEM)
	if err != nil {
		return nil, err
	}
	if bytes.Count(b, []byte(caLine)) != 1 {
		return nil, errors.New("install.sh has no single CONSOLE_CA line")
	}
	// Re-encoded from the DER: only base64 and dashes go between the quotes.
	pemText := strings.TrimSuffix(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})), "\n")
	return bytes.Replace(b, []byte(caLine), []byte("CONSOLE_CA='"+pemText+"'\n"), 1), nil
}

// Console is what the one-line installers need to know about a console.
type Console struct {
	// URL is the console's public URL (http:// or https://).
	URL string
	// CAPEM is the console's generated CA when the console serves HTTPS
	// with it; the lines then pin it. Nil for a certificate the machines
	// already trust (--tls-cert from a public CA) or plain HTTP.
	CAPEM []byte
	// CAFingerprint is passed on to the script, which checks its CA against
	// it and gives it to the agent to pin at enrolment.
	CAFingerprint string
}

// Commands returns the one-line installers ("linux", "windows") that enrol
// a machine with token. With a CA to pin, nothing runs unless the server
// proves it holds a certificate issued by that CA; without one, the
// machine's own trust store decides. No line turns verification off.
func Commands(c Console, token string) (map[string]string, error) {
	return commands(c, "--token "+token, "-Token "+token)
}

// KeyCommands returns the one-line installers that enrol a machine with a
// reusable enrolment key: the same lines as Commands, pinning alike, with
// --key (-Key) instead of --token. Each machine that runs one becomes a new
// host with the key's labels; an operator may add --name and --labels
// (-Name, -Labels) for one machine.
func KeyCommands(c Console, key string) (map[string]string, error) {
	return commands(c, "--key "+key, "-Key "+key)
}

// commands makes the lines with the script's credential option for Linux
// and for Windows.
func commands(c Console, linuxCred, windowsCred string) (map[string]string, error) {
	base := strings.TrimRight(c.URL, "/")
	fp := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(c.CAFingerprint), ":", ""))
	linuxFetch := "curl -fsSL " + base + "/install.sh"
	winPrefix := ""
	if strings.HasPrefix(base, "https://") {
		// Windows PowerShell 5.1 may not offer TLS 1.2 by itself; the
		// callback is reset so that one left in the session by an earlier
		// paste does not decide.
		winPrefix = "[Net.ServicePointManager]::SecurityProtocol = 'Tls12'; [Net.ServicePointManager]::ServerCertificateValidationCallback = $null; "
	}
	if len(c.CAPEM) > 0 && strings.HasPrefix(base, "https://") {
		ca, err := parseCA(c.CAPEM)
		if err != nil {
			return nil, err
		}
		if fp != tlsutil.Fingerprint(ca.Raw) {
			return nil, fmt.Errorf("install: the console's CA has fingerprint %s, not %s", tlsutil.Fingerprint(ca.Raw), fp)
		}
		linuxFetch = linuxCAPrinter(ca) + " | curl -fsSL --cacert /dev/stdin " + base + "/install.sh"
		winPrefix = "[Net.ServicePointManager]::SecurityProtocol = 'Tls12'; [Net.ServicePointManager]::ServerCertificateValidationCallback = " + windowsPin(ca) + "; "
	}
	linux := linuxFetch + " | sudo sh -s -- --server " + base + " " + linuxCred
	windows := winPrefix + "& ([scriptblock]::Create((New-Object Net.WebClient).DownloadString('" + base + "/install.ps1'))) -Server " + base + " " + windowsCred
	if fp != "" {
		linux += " --ca-fingerprint " + fp
		windows += " -CaFingerprint " + fp
	}
	return map[string]string{"linux": linux, "windows": windows}, nil
}

// linuxCAPrinter writes the CA as PEM, one quoted argument a line, for curl
// to read as its only CA file (--cacert /dev/stdin: no temporary file and
// no shell variable, so the line works the same in sh, bash, zsh and fish).
// curl then checks the server's chain and name against it, as for any
// HTTPS download; another CA, or a certificate for another name, is
// refused before a byte reaches sh. (curl builds with a default CA
// directory, such as Debian's /etc/ssl/certs, consult it too: a certificate
// for the console's name from a CA the machine already trusts would pass.
// Overriding it with --capath makes GnuTLS builds fail, so the line does
// not; the agent itself trusts only the pinned CA.)
func linuxCAPrinter(ca *x509.Certificate) string {
	lines := strings.Split(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))), "\n")
	return "printf '%s\\n' '" + strings.Join(lines, "' '") + "'"
}

// windowsPin is a certificate callback for Windows PowerShell (5.1 and
// later) that accepts a server only when its certificate matches the name
// (SslPolicyErrors bits 1 and 2 clear), its chain verifies except for the
// root being unknown to Windows (the private CA) or revocation being
// unknown (the CA publishes no lists), and the chain's root is the pinned
// CA by SHA-256 of its DER. The root's fingerprint alone would not do: the
// CA certificate is public, and a server could send it after a leaf it
// did not sign. install.ps1 does the same in C# (Use-PinnedCA).
func windowsPin(ca *x509.Certificate) string {
	return "{ param($request, $cert, $chain, $policyErrors) " +
		"$root = $chain.ChainElements[$chain.ChainElements.Count - 1].Certificate; " +
		"(([int]$policyErrors -band 3) -eq 0) -and " +
		"-not ($chain.ChainStatus | Where-Object { @('NoError', 'UntrustedRoot', 'RevocationStatusUnknown', 'OfflineRevocation') -notcontains $_.Status }) -and " +
		"([BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash($root.RawData)).Replace('-', '') -eq '" + tlsutil.Fingerprint(ca.Raw) + "') }"
}

func parseCA(caPEM []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(caPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("install: the console's CA is not a PEM certificate")
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("install: the console's CA: %w", err)
	}
	return ca, nil
}
