//go:build windows

package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// The DACLs grant full control to LocalSystem (the account the service
// runs as) and to the Administrators group only; "P" protects them from the
// ACEs they would otherwise inherit from %ProgramData%, which let every
// local user read files created below it. A directory's ACEs are inherited
// by everything created in it (OI: files, CI: subdirectories).
const (
	restrictedDirDACL  = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
	restrictedFileDACL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
)

// RestrictPath makes a file, or a directory and everything in it,
// accessible only to the service account and administrators. On Windows,
// Go's permission bits (0600, 0700) are not access control: without this,
// the agent's credential, its private key and the temporary secret files of
// a running restic would be readable by every user of the machine.
//
// SetNamedSecurityInfo propagates a directory's new inheritable ACEs to the
// files that already exist below it.
func RestrictPath(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	sddl := restrictedFileDACL
	if st.IsDir() {
		sddl = restrictedDirDACL
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	return nil
}
