from xinf_planner.cli.main import main

main()
