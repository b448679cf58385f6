package cli

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func newVersionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print airlock's version and the commit it was built from",
		Long: `Print airlock's module version and the VCS commit it was built from (with
"dirty" when the work tree had uncommitted changes, and the commit's time), as
the Go toolchain recorded them in the binary. airlock --version prints the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(f.IO.Out, versionText(debug.ReadBuildInfo()))
			return err
		},
	}
}

// versionText describes the build from what the Go toolchain embeds: the
// main module's version and, when built in a git checkout, vcs.revision,
// vcs.modified and vcs.time. Nothing is set by hand at build time, so no
// binary claims a version it is not.
func versionText(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "airlock (unknown version: built without module information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	var parts []string
	if rev := settings["vcs.revision"]; rev != "" {
		c := "commit " + rev
		if settings["vcs.modified"] == "true" {
			c += " (dirty)"
		}
		parts = append(parts, c)
	} else {
		parts = append(parts, "commit unknown (built outside a git checkout)")
	}
	if t := settings["vcs.time"]; t != "" {
		parts = append(parts, "committed "+t)
	}
	if info.GoVersion != "" {
		parts = append(parts, info.GoVersion)
	}
	return fmt.Sprintf("airlock %s\n%s", version, strings.Join(parts, "\n"))
}
