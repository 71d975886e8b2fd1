from edge_sim.cli import main

main()
