// Command benchtable prints the figures `make bench` wrote (the JSON files
// of internal/benchout in one or more directories) as one table: each
// figure, the reference measured in the same run, its target, whether the
// target was met and by how much, and the machine's load while it ran.
// The commands that produced the figures follow the table, numbered.
//
//	go run ./cmd/benchtable bench-out
//	go run ./cmd/benchtable -md bench-out    # a Markdown table, for docs/scale.md
//
// It exits 0 when targets are missed: figures are read, never asserted
// (the machines are shared and noisy). It exits 1 when there is nothing
// to print or a file cannot be read.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/restic-manager/restic-manager/internal/benchout"
)

func main() {
	md := flag.Bool("md", false, "print a Markdown table")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: benchtable [-md] DIR...  (default DIR: bench-out)")
		flag.PrintDefaults()
	}
	flag.Parse()
	dirs := flag.Args()
	if len(dirs) == 0 {
		dirs = []string{"bench-out"}
	}
	var files []benchout.File
	var skipped []string
	for _, d := range dirs {
		fs, sk, err := benchout.ReadDir(d)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(1)
		}
		files, skipped = append(files, fs...), append(skipped, sk...)
	}
	if len(skipped) > 0 {
		// fleetsim's full reports sit beside the figures: one line, not
		// one per file.
		fmt.Fprintf(os.Stderr, "benchtable: skipped %d files not in benchout's format: %s\n", len(skipped), strings.Join(skipped, ", "))
	}
	if len(files) == 0 {
		fmt.Fprintf(os.Stderr, "benchtable: no figures in %s (run with %s set)\n", strings.Join(dirs, ", "), benchout.EnvDir)
		os.Exit(1)
	}
	if err := render(os.Stdout, files, *md); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

// row is one figure as printed.
type row struct {
	group                                string
	figure, measured, ref, target, check string
	load, cmd                            string
}

var header = row{figure: "figure", measured: "measured", ref: "reference (same run)", target: "target", check: "met/missed", load: "load", cmd: "cmd"}

// rows orders the figures by group (benchout.GroupOrder, then the other
// groups sorted), keeping the files' order within a group, and numbers
// the distinct commands in the order they first appear.
func rows(files []benchout.File) ([]row, []string) {
	rank := func(g string) int {
		if i := slices.Index(benchout.GroupOrder, g); i >= 0 {
			return i
		}
		return len(benchout.GroupOrder)
	}
	var figs []benchout.Figure
	for _, f := range files {
		figs = append(figs, f.Figures...)
	}
	slices.SortStableFunc(figs, func(a, b benchout.Figure) int {
		if ra, rb := rank(a.Group), rank(b.Group); ra != rb {
			return ra - rb
		}
		// Within a known group the files' order; unknown groups apart.
		return strings.Compare(a.Group, b.Group)
	})
	var out []row
	var cmds []string
	for _, f := range figs {
		n := slices.Index(cmds, f.Command)
		if n < 0 {
			cmds = append(cmds, f.Command)
			n = len(cmds) - 1
		}
		r := row{group: f.Group, figure: f.What, measured: withUnit(f.Value, f.Unit), target: f.Target.String(), check: check(f), cmd: fmt.Sprintf("[%d]", n+1)}
		if r.figure == "" {
			r.figure = f.ID
		}
		if f.Reference != nil {
			r.ref = withUnit(f.Reference.Value, f.Reference.Unit) + " " + f.Reference.What
		}
		if f.Load != nil {
			r.load = fmt.Sprintf("%.2f→%.2f", f.Load.Start, f.Load.End)
		}
		if f.Note != "" {
			r.figure += " (" + f.Note + ")"
		}
		out = append(out, r)
	}
	return out, cmds
}

func withUnit(v float64, unit string) string {
	switch unit {
	case "":
		return benchout.Num(v)
	case "x":
		return benchout.Num(v) + "×"
	}
	return benchout.Num(v) + " " + unit
}

// check is the met/missed column: "met (20 % margin)", "MISSED by 50 %"
// and, for a target on value ÷ reference, the ratio held against it.
func check(f benchout.Figure) string {
	if f.Target == nil {
		return ""
	}
	met, compared, by, ok := f.Check()
	if !ok {
		return "no reference"
	}
	ratio := ""
	if f.Target.Relative {
		ratio = " at " + withUnit(compared, f.Target.Unit)
	}
	// By how much, as a share of the bound: whole percent, a decimal
	// below 10 %.
	pct := func(x float64) string {
		if x *= 100; x < 10 {
			return fmt.Sprintf("%.1f %%", x)
		}
		return fmt.Sprintf("%.0f %%", x)
	}
	switch {
	case !met:
		return "MISSED" + ratio + " by " + pct(by)
	case f.Target.Value == 0 || by == 0:
		return "met" + ratio
	default:
		return "met" + ratio + " (" + pct(-by) + " margin)"
	}
}

// render prints the table, a group's name above its figures, then the
// commands.
func render(w io.Writer, files []benchout.File, markdown bool) error {
	rs, cmds := rows(files)
	if markdown {
		cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
		line := func(r row) {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(r.figure), cell(r.measured), cell(r.ref), cell(r.target), cell(r.check), r.load, r.cmd)
		}
		line(header)
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		group := "\x00"
		for _, r := range rs {
			if r.group != group {
				group = r.group
				fmt.Fprintf(w, "| **%s** | | | | | | |\n", cell(group))
			}
			line(r)
		}
		fmt.Fprintln(w)
		for i, c := range cmds {
			fmt.Fprintf(w, "%d. `%s`\n", i+1, c)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(r row) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.figure, r.measured, r.ref, r.target, r.check, r.load, r.cmd)
	}
	line(header)
	line(row{figure: "------", measured: "--------", ref: "--------------------", target: "------", check: "----------", load: "----", cmd: "---"})
	group := "\x00"
	for _, r := range rs {
		if r.group != group {
			group = r.group
			line(row{figure: "[" + group + "]"})
		}
		r.figure = "  " + r.figure
		line(r)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	fmt.Fprintln(w, "\ncommands:")
	for i, c := range cmds {
		fmt.Fprintf(w, "[%d] %s\n", i+1, c)
	}
	return nil
}
