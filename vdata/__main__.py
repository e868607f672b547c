from vdata.cli import main

main()
