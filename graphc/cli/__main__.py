from graphc.cli import main

main()
