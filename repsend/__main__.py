from repsend.cli import main

main()
