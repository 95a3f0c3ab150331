from fashionparse.cli import main

main()
