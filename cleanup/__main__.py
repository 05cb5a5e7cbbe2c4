from cleanup.cli import main

main(prog_name="reaction-cleanup")
