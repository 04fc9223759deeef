from resgate.console import main

main()
