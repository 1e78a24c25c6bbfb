from findlora.cli import main

main()
