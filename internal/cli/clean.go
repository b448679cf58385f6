package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/store"
)

func newCleanCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Finish what interrupted airlock processes left behind",
		Long: `Bring every run's record up to date, record runs whose creation was interrupted
as failed, and remove containers labelled as airlock's whose run is unknown or
removed. clean never removes a run's commits: use rm for that.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cleanRun(cmd.Context(), f)
		},
	}
}

func cleanRun(ctx context.Context, f *Factory) error {
	m, err := f.manager()
	if err != nil {
		return err
	}
	if err := m.Engine.Ping(ctx); err != nil {
		return err
	}
	runs, err := m.Store.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range runs {
		if r.Removed() || (r.Status.Finished() && r.Harvested) {
			continue
		}
		before := r.Status
		cur, err := m.Collect(ctx, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", r.ID, err))
			continue
		}
		if cur.Status != before && cur.Status == store.StatusFailed {
			fmt.Fprintf(f.IO.ErrOut, "Recorded %s as failed: %s\n", cur.ID, cur.Error)
		}
	}
	orphans, err := m.Orphans(ctx)
	if err != nil {
		return err
	}
	for _, c := range orphans {
		if err := m.Engine.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(f.IO.ErrOut, "Removed orphaned container %s\n", c.Name)
	}
	return errors.Join(errs...)
}
