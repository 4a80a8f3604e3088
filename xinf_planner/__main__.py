from xinf_planner.cli import main

main()
