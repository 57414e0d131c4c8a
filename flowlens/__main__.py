from flowlens.cli import main

main()
