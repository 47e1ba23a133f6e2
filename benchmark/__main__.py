from benchmark import malloc

malloc.tune()  # before the first tensor: freed memory is kept for the next step (benchmark/malloc.py)

from benchmark.cli import main  # noqa: E402

raise SystemExit(main())
