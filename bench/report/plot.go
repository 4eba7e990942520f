package report

func Plot(r *Report, path string) error { return nil }
