from chamber.cli import main

main()
