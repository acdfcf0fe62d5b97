from dms.daemon import main

main()
