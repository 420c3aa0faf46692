from sockway.cli import main

main()
