"""Operations helpers used by the CLI only: the systemd manager (:mod:`.systemd`), the timers'
schedule (:mod:`.schedule`) and charts (:mod:`.charts`). No service imports these."""
