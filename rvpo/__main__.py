from rvpo.cli import main

raise SystemExit(main())
