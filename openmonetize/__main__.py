from openmonetize.cli import main

main()
