package harness

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stats is a process's memory and CPU time, from /proc (Linux; zero
// elsewhere or once the process is gone).
type Stats struct {
	RSSMiB  float64 `json:"rss_mib"` // resident set
	HWMMiB  float64 `json:"hwm_mib"` // peak resident set
	CPUSecs float64 `json:"cpu_s"`   // user + system
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// ReadStats reads a process's Stats.
func ReadStats(pid int) Stats {
	var st Stats
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for key, dst := range map[string]*float64{"VmRSS:": &st.RSSMiB, "VmHWM:": &st.HWMMiB} {
				if rest, ok := strings.CutPrefix(line, key); ok {
					v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
					*dst = v / 1024
				}
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces) in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				stt, _ := strconv.ParseFloat(f[12], 64)
				st.CPUSecs = (ut + stt) / clockTicks
			}
		}
	}
	return st
}
